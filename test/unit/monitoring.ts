// What the monitor is told to scrape, derived from the topology alone: every host's
// node exporter on its LAN address (a site's through the tunnel), each role's own
// exporter; each host's firewall admits the monitor on exactly those ports; a new
// backend in the topology is a new target; the gateways' IPsec metrics as text.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { prometheusConfig } from '../../provision/roles/monitor.js'
import { monitorInput } from '../../provision/roles/monitoring.js'
import type { Context } from '../../provision/runner.js'
import { loadPlan, type Plan } from '../../provision/plan.js'
import { planWith } from '../lib/fake.js'
import { topologyFile } from '../../provision/paths.js'
import { render } from '../../services/gateway/ipsec-metrics.js'
import { parseRawSas } from '../../services/lib/swanctl.js'
import { watch, watchText } from '../../scripts/lib/watch.js'

const topo = loadPlan(topologyFile)
const host = (name: string) => topo.hosts.find((h) => h.name === name)!
const ctx = (name: string, plan: Plan = topo) => ({ plan, self: plan.hosts.find((h) => h.name === name)! }) as Context

t.test('every host is scraped on its LAN address, each role with its own exporter', async (t) => {
  const targets = topo.services.scrapeTargets.map((x) => `${x.job} ${x.host} ${x.address}:${x.port}`)
  t.same(targets, [
    'node iot-client 10.10.1.10:9100',
    'client iot-client 10.10.1.10:9101',
    'node gw-iot 10.10.1.1:9100',
    'node gw-cloud 10.20.0.2:9100',
    'node gw-cloud-2 10.20.0.3:9100',
    'node proxy-1 10.20.0.11:9100',
    'nginx proxy-1 10.20.0.11:9113',
    'node proxy-2 10.20.0.12:9100',
    'nginx proxy-2 10.20.0.12:9113',
    'node backend-1 10.20.0.21:9100',
    'ingest backend-1 10.20.0.21:9102',
    'node backend-2 10.20.0.22:9100',
    'ingest backend-2 10.20.0.22:9102',
    'node database-1 10.20.0.31:9100',
    'postgres database-1 10.20.0.31:9187',
    'patroni database-1 10.20.0.31:8008',
    'node database-2 10.20.0.32:9100',
    'postgres database-2 10.20.0.32:9187',
    'patroni database-2 10.20.0.32:8008',
    'node database-3 10.20.0.33:9100',
    'postgres database-3 10.20.0.33:9187',
    'patroni database-3 10.20.0.33:8008',
    'node monitor 10.20.0.40:9100',
    'prometheus monitor 10.20.0.40:9090',
  ])
  t.same(
    planWith((r) => delete r.hosts.monitor).services.scrapeTargets,
    [],
    'no monitor in the topology: nothing to scrape',
  )
})

t.test('each host admits the monitor on exactly the ports it scrapes there', async (t) => {
  t.same(monitorInput(topo, host('iot-client')), [
    'ip saddr 10.20.0.40 tcp dport { 9100, 9101 } accept comment "Prometheus on monitor: what it scrapes here"',
  ])
  t.same(monitorInput(topo, host('backend-1')), [
    'ip saddr 10.20.0.40 tcp dport { 9100, 9102 } accept comment "Prometheus on monitor: what it scrapes here"',
  ])
  t.same(monitorInput(topo, host('database-1')), [
    'ip saddr 10.20.0.40 tcp dport { 9100, 9187, 8008 } accept comment "Prometheus on monitor: what it scrapes here"',
  ])
  t.same(monitorInput(topo, host('monitor')), [], 'the monitor scrapes itself locally')
})

t.test('the scrape configuration: a job per exporter, each target labelled with its host and role', async (t) => {
  const conf = prometheusConfig(ctx('monitor'))
  const y = parse(conf) as {
    global: Record<string, string>
    rule_files: string[]
    scrape_configs: { job_name: string; static_configs: { targets: string[]; labels: Record<string, string> }[] }[]
  }
  t.match(y.global, { scrape_interval: '5s', evaluation_interval: '5s' })
  t.same(y.rule_files, ['/etc/prometheus/lab-alerts.yml'])
  t.same(
    y.scrape_configs.map((j) => j.job_name),
    ['node', 'client', 'nginx', 'ingest', 'postgres', 'patroni', 'prometheus'],
  )
  const ingest = y.scrape_configs.find((j) => j.job_name === 'ingest')!
  t.same(ingest.static_configs, [
    { targets: ['10.20.0.21:9102'], labels: { host: 'backend-1', role: 'backend' } },
    { targets: ['10.20.0.22:9102'], labels: { host: 'backend-2', role: 'backend' } },
  ])
  t.same(y.scrape_configs.find((j) => j.job_name === 'prometheus')!.static_configs[0].targets, ['127.0.0.1:9090'])
  // A third backend in the topology: one provision later, it is scraped.
  const more = planWith(
    (r) => (r.hosts['backend-3'] = { role: 'backend', interfaces: { mgmt: '172.31.250.23', cloud: '10.20.0.23' } }),
  )
  t.match(
    prometheusConfig(ctx('monitor', more)),
    /targets: \['10\.20\.0\.23:9102'\]\n\s+labels: \{ host: backend-3, role: backend \}/,
  )
  const promtool = '/usr/bin/promtool'
  // A check that cannot run records a skip (never nothing): `npm test` installs promtool as root.
  if (fs.existsSync(promtool)) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prom-'))
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), conf)
    t.match(
      execFileSync(promtool, ['check', 'config', '--syntax-only', path.join(dir, 'prometheus.yml')], {
        encoding: 'utf8',
      }),
      /SUCCESS/,
      'promtool accepts it',
    )
    fs.rmSync(dir, { recursive: true, force: true })
  } else
    t.test(
      'a check the tools here cannot run',
      { skip: 'promtool accepts it: no promtool here (`npm test` installs it as root: Debian package prometheus)' },
      async () => {},
    )
})

t.test("the gateways' IPsec metrics: SAs up, traffic kept monotonic across a rekey, rekeys counted", async (t) => {
  const sa = (child: number, bytesIn: number) =>
    `list-sa event {gw-iot {uniqueid=1 version=2 state=ESTABLISHED established=100 child-sas {gw-iot-${child} {name=gw-iot uniqueid=${child} reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP bytes-in=${bytesIn} packets-in=${bytesIn / 100} bytes-out=50 packets-out=1}}}}`
  const value = (text: string, name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1])
  const a = render('gw-cloud', 'libipsec', ['gw-iot'], parseRawSas(sa(1, 1000)), 0)
  t.match(a, /^lab_ipsec_child_sa_up\{host="gw-cloud",side="gw-cloud",conn="gw-iot",child="gw-iot"\} 1$/m)
  t.match(a, /^lab_ipsec_ike_sa_up\{host="gw-cloud",side="gw-cloud",conn="gw-iot"\} 1$/m)
  t.match(a, /^lab_ipsec_datapath_info\{host="gw-cloud",side="gw-cloud",mode="libipsec"\} 1$/m)
  t.equal(value(a, 'lab_ipsec_child_bytes_in_total'), 1000)
  const b = render('gw-cloud', 'libipsec', ['gw-iot'], parseRawSas(sa(1, 1500)), 0)
  t.equal(value(b, 'lab_ipsec_child_bytes_in_total'), 1500)
  const c = render('gw-cloud', 'libipsec', ['gw-iot'], parseRawSas(sa(2, 200)), 0) // rekeyed: a new child SA starts from zero
  t.equal(value(c, 'lab_ipsec_child_bytes_in_total'), 1700, 'the counter does not fall back after a rekey')
  t.equal(value(c, 'lab_ipsec_child_sa_new_total'), 1, 'the rekey is counted')
  const down = render('gw-cloud', 'libipsec', ['gw-iot'], [], 0)
  t.match(
    down,
    /^lab_ipsec_child_sa_up\{host="gw-cloud",side="gw-cloud",conn="gw-iot",child="gw-iot"\} 0$/m,
    'no SA: the connection is down, not absent',
  )
  t.equal(value(down, 'lab_ipsec_child_bytes_in_total'), 1700, 'and its counter stays')
})

t.test(
  "lab:status's monitor lines: rates, shares, backlog, tunnels, alerts; a plain sentence without a monitor",
  async (t) => {
    const text = watchText({
      url: 'http://172.31.250.40:9090',
      readingsPerS: 16.04,
      pending: 130,
      oldestS: 71.4,
      share: { 'backend-1': 9, 'backend-2': 7 },
      tunnelBitsPerS: { 'gw-cloud': { in: 68_600, out: 20_100 }, 'gw-iot': { in: 2_500_000, out: 12 } },
      alerts: [{ name: 'LabBackendDown', host: 'backend-2', severity: 'warning' }],
      down: ['ingest on backend-2'],
      pairs: [
        {
          group: 'proxy',
          members: [
            { host: 'proxy-1', state: 'backup' },
            { host: 'proxy-2', state: 'master' },
            { host: 'proxy-3', state: 'fault' },
            { host: 'proxy-4' },
          ],
        },
      ],
      dbCluster: {
        group: 'database',
        members: [
          { host: 'database-1', role: 'sync standby', lagBytes: 0 },
          { host: 'database-2', role: 'primary' },
          { host: 'database-3', role: 'replica', lagBytes: 3 << 20 },
          { host: 'database-4' },
        ],
      },
    })
    t.match(text, /console: http:\/\/172\.31\.250\.40:9090\/consoles\/lab\.html/)
    t.match(text, /readings stored +16\.0\/s over the last minute \(backend-1 56 %, backend-2 44 %\)/)
    t.match(text, /backlog +130 readings waiting, the oldest 71 s old/)
    t.match(text, /tunnels +gw-cloud in 68\.6 kbit\/s, out 20\.1 kbit\/s; gw-iot in 2\.5 Mbit\/s, out 12 bit\/s/)
    t.match(text, /targets down +ingest on backend-2/)
    t.match(
      text,
      /pair proxy +proxy-1 standby, proxy-2 active, proxy-3 failing its health check, proxy-4 not reporting/,
      "each pair's members with their VRRP state in words",
    )
    t.match(
      text,
      /cluster database +database-1 sync standby \(0 B behind\), database-2 primary, database-3 replica \(3\.0 MiB behind\), database-4 not reporting/,
      "the database cluster's members as Patroni reports them",
    )
    t.match(text, /alerts firing +LabBackendDown \(backend-2\)/)
    t.match(
      watchText(
        'Monitor: Prometheus does not answer at http://x:9090 (timeout); is the lab up and provisioned? npm run lab',
      ),
      /^\nMonitor: Prometheus does not answer/,
    )
    const none = await watch(planWith((r) => delete r.hosts.monitor))
    t.equal(none, 'Monitor: the topology has no host with role monitor.')
  },
)
