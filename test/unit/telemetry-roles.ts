// What the plan resolves for the telemetry roles: the client's server (the old server
// address by default), the proxy's upstreams, the database's address; and the nginx
// config the proxy role renders from it (every backend, retries as many as backends).
import { renderFile } from '../../provision/template.js'
import t from 'tap'
import { nginxConf } from '../../provision/roles/proxy.js'
import type { Context } from '../../provision/runner.js'
import { clientOf, loadPlan, planOf } from '../../provision/plan.js'
import { planWith } from '../lib/fake.js'
import { topologyFile } from '../../provision/paths.js'

const topo = loadPlan(topologyFile)
const client = topo.hosts.find((h) => h.role === 'iot-client')!

t.test("the client sends to its LAN's old server address, unless telemetry.server says otherwise", async (t) => {
  t.equal(clientOf(topo, client.name)!.url, 'http://10.10.1.100:80/readings')
  const elsewhere = planWith((r) => (r.telemetry.server = '10.20.0.10'))
  t.equal(clientOf(elsewhere, client.name)!.url, 'http://10.20.0.10/readings')
  const noOldServer = planWith((r) => delete r.networks.iot.old_server)
  t.equal(clientOf(noOldServer, client.name)!.url, 'http://10.20.0.10/readings', 'no old server: the proxy')
})

t.test('upstreams and the database address come from the topology', async (t) => {
  t.same(topo.services.backends, [
    { name: 'backend-1', address: '10.20.0.21', port: 8080, from: ['10.20.0.11', '10.20.0.12'] },
    { name: 'backend-2', address: '10.20.0.22', port: 8080, from: ['10.20.0.11', '10.20.0.12'] },
  ])
  t.equal(topo.services.proxy!.address, '10.20.0.10', "the proxy pair's virtual address")
  t.same(
    topo.services.proxy!.members,
    [
      { host: 'proxy-1', address: '10.20.0.11' },
      { host: 'proxy-2', address: '10.20.0.12' },
    ],
    'each member on its own address',
  )
  t.equal(topo.services.db!.address, '10.20.0.30')
  t.same(topo.services.db!.clients, ['10.20.0.21', '10.20.0.22'], 'the database admits the backends')
  t.same(topo.services.proxy!.devicesFrom, [{ subnet: '10.10.1.0/24', ports: [80] }], 'the proxy admits the IoT LAN')
  t.throws(() => ((topo.services.backends as unknown[]).length = 0), TypeError, 'the plan is frozen')
})

t.test('nginx: one server line per backend, retries over all of them, the retry rule explained', async (t) => {
  const proxy = topo.hosts.find((h) => h.role === 'proxy')!
  const conf = nginxConf({ plan: topo, self: proxy } as Context)
  t.match(conf, /upstream ingest \{\n\s+least_conn;/)
  t.same(conf.match(/server 10\.20\.0\.\d+:8080 max_fails=1 fail_timeout=3s;/g), [
    'server 10.20.0.21:8080 max_fails=1 fail_timeout=3s;',
    'server 10.20.0.22:8080 max_fails=1 fail_timeout=3s;',
  ])
  t.match(conf, 'proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;')
  t.match(conf, /idempotent: a device's sequence number is stored once/)
  t.match(conf, 'proxy_next_upstream_tries 2;', 'as many tries as backends (2)')
  // Derived, not written down: with three backends, three tries (a retry may reach each).
  const three = planWith(
    (r) => (r.hosts['backend-3'] = { role: 'backend', interfaces: { mgmt: '172.31.250.99', cloud: '10.20.0.23' } }),
  )
  const conf3 = nginxConf({ plan: three, self: proxy } as Context)
  t.equal(conf3.match(/server 10\.20\.0\.\d+:8080 /g)?.length, 3, 'three backends, three server lines')
  t.match(conf3, 'proxy_next_upstream_tries 3;', 'and three tries')
  t.match(conf, 'client_max_body_size 1024;')
  t.match(
    conf,
    /if \(\$content_type ~\* "\^application\/x-ndjson"\) \{\n\s+rewrite \^\/readings\$ \/readings-batch last;/,
    'a batch is sent to its own location before the body size is checked',
  )
  t.match(
    conf,
    /location = \/readings-batch \{\n\s+internal;\n\s+client_max_body_size 524288;\n\s+client_body_buffer_size 524288;\n\s+proxy_pass https:\/\/ingest\/readings;/,
    "the only location with the batch's limit, not reachable directly",
  )
  t.match(conf, 'add_header X-Upstream $upstream_addr always;')
  t.match(conf, /listen 10\.20\.0\.11:8081;[\s\S]*stub_status;[\s\S]*allow 10\.20\.0\.0\/24;[\s\S]*deny all;/)
  t.match(conf, /keepalive 64;/)
  t.match(conf, /listen 10\.20\.0\.10:80;\n\s+listen 127\.0\.0\.1:80;/, "on the old server's port")
  const other = planWith((r) => (r.networks.iot.old_server.ports = [8000, 80]))
  const both = nginxConf({ plan: other, self: proxy } as Context)
  t.same(
    both.match(/listen 10\.20\.0\.10:\d+;/g),
    ['listen 10.20.0.10:80;', 'listen 10.20.0.10:8000;'],
    "on every port the sites forward, on the pair's virtual address",
  )
  t.same(both.match(/listen 10\.20\.0\.1[12]:\d+;/g), ['listen 10.20.0.11:8081;'], 'its status page on its own')
})

t.test(
  'nginx: mutual TLS to the backends, verified against the services CA and its CRL; plain only when the topology says so',
  async (t) => {
    const proxy = topo.hosts.find((h) => h.role === 'proxy')!
    const conf = nginxConf({ plan: topo, self: proxy } as Context)
    for (const line of [
      `proxy_ssl_certificate /etc/lab-tls/${proxy.name}.pem;`,
      `proxy_ssl_certificate_key /etc/lab-tls/${proxy.name}.key;`,
      'proxy_ssl_trusted_certificate /etc/lab-tls/services-ca.pem;',
      'proxy_ssl_crl /etc/lab-tls/services.crl;',
      'proxy_ssl_verify on;',
      `proxy_ssl_name ingest.${topo.name};`,
      'proxy_ssl_protocols TLSv1.3;',
      'proxy_ssl_session_reuse on;',
    ])
      t.ok(conf.includes(line), line)
    t.same(
      conf.match(/proxy_pass \S+/g),
      ['proxy_pass https://ingest;', 'proxy_pass https://ingest/readings;', 'proxy_pass https://ingest;'],
      'every location to the backends over TLS',
    )
    const plain = nginxConf({ plan: planWith((r) => (r.telemetry.cloud_tls = false)), self: proxy } as Context)
    t.notMatch(plain, /proxy_ssl_/, 'cloud_tls false: no TLS')
    t.same(plain.match(/proxy_pass \S+/g), [
      'proxy_pass http://ingest;',
      'proxy_pass http://ingest/readings;',
      'proxy_pass http://ingest;',
    ])
  },
)

t.test(
  'PostgreSQL: hostssl with the client certificate and the password for each backend, no plain line',
  async (t) => {
    const vars = {
      host: 'database',
      database: 'telemetry',
      user: 'ingest',
      backends: ['10.20.0.21', '10.20.0.22'],
      members: [],
    }
    const hba = renderFile('db/pg_hba.conf', { ...vars, tls: true })
    t.same(
      hba.match(/^host\S*\s+telemetry.*$/gm)!.map((l) => l.replace(/\s+/g, ' ')),
      [
        'host telemetry ingest 127.0.0.1/32 scram-sha-256',
        'hostssl telemetry ingest 10.20.0.21/32 scram-sha-256 clientcert=verify-full',
        'hostssl telemetry ingest 10.20.0.22/32 scram-sha-256 clientcert=verify-full',
      ],
      'the LAN: TLS only, certificate and password; loopback alone stays for local checks',
    )
    t.match(
      renderFile('db/pg_hba.conf', { ...vars, tls: false }),
      /^host\s+telemetry\s+ingest\s+10\.20\.0\.21\/32\s+scram-sha-256$/m,
      'cloud_tls false: plain',
    )
  },
)

t.test('no backend is a clear error, not an empty upstream', async (t) => {
  const noBackends = planOf({
    name: 'lab',
    networks: {
      mgmt: { kind: 'management', cidr: '172.31.250.0/24', host_address: '172.31.250.1' },
      cloud: { kind: 'lan', cidr: '10.20.0.0/24' },
    },
    hosts: { proxy: { role: 'proxy', interfaces: { mgmt: '172.31.250.20', cloud: '10.20.0.10' } } },
  })
  t.throws(
    () => nginxConf({ plan: noBackends, self: noBackends.hosts[0] } as Context),
    /no backend on a network with the proxy: add a host with role backend/,
  )
})
