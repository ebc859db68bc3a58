// The database cluster as the plan and the db role make it: three members, each with
// Patroni (strict synchronous replication to one standby, timings that replace a lost
// primary within the 30 s goal), an etcd member of the three, pg_hba.conf admitting the
// other members for replication over TLS, the firewall open between the members alone,
// keepalived moving the backends' address to the primary (Patroni's /primary), and the
// members' certificates naming that address (the backends verify-full against it).
import path from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { repoRoot, topologyFile } from '../../provision/paths.js'
import { loadPlan, type Host } from '../../provision/plan.js'
import {
  db,
  dcsPatch,
  dcsSettings,
  etcdDefaults,
  patroniPatch,
  patroniYml,
  pgHbaConf,
  PATRONI_TIMES,
} from '../../provision/roles/db.js'
import { altNames } from '../../provision/roles/service-tls.js'
import { rolesFor } from '../../provision/roles/index.js'
import type { Context } from '../../provision/runner.js'
import fs from 'node:fs'
import os from 'node:os'

const plan = loadPlan(topologyFile)
const single = loadPlan(path.join(repoRoot, 'topology.single.yaml'))
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-db-cluster-'))
t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }))
const host = (p: typeof plan, name: string) => p.hosts.find((h) => h.name === name)!
const ctx = (h: Host, p = plan) => ({ plan: p, self: h, stateDir }) as unknown as Context

t.test('the plan: the backends reach the cluster on its virtual address, each member on its own', async (t) => {
  const s = plan.services.db!
  t.equal(s.address, '10.20.0.30')
  t.same(
    s.members.map((m) => `${m.host} ${m.address}`),
    ['database-1 10.20.0.31', 'database-2 10.20.0.32', 'database-3 10.20.0.33'],
  )
  t.same(s.cluster, { scope: 'iotlab-db', patroniPort: 8008, etcdClientPort: 2379, etcdPeerPort: 2380 })
  t.same(
    rolesFor(host(plan, 'database-1'), plan).map((r) => r.name),
    ['common', 'db', 'vrrp'],
    'keepalived after the database role',
  )
})

t.test(
  "Patroni's settings: strict synchronous replication, timings inside the goal, TLS between members",
  async (t) => {
    const y = parse(patroniYml(ctx(host(plan, 'database-2')), '15'))
    t.equal(y.name, 'database-2')
    t.equal(y.scope, 'iotlab-db')
    t.same(y.etcd.hosts, ['10.20.0.31:2379', '10.20.0.32:2379', '10.20.0.33:2379'], 'all three etcd members')
    t.equal(y.etcd3, undefined, "not v3: Patroni 3.0.2's v3 leader renewal overwrites another member's key")
    const dcs = y.bootstrap.dcs
    t.equal(dcs.synchronous_mode, true)
    t.equal(dcs.synchronous_mode_strict, true, 'no standby: writes wait, never acknowledged alone')
    t.equal(dcs.synchronous_node_count, 1)
    t.ok(dcs.loop_wait + 2 * dcs.retry_timeout <= dcs.ttl, "Patroni's rule: loop_wait + 2 retry_timeout <= ttl")
    t.ok(dcs.ttl + dcs.loop_wait <= 30, 'a lost primary replaced within 30 s (ttl + loop_wait)')
    t.same(
      [dcs.ttl, dcs.loop_wait, dcs.retry_timeout],
      [PATRONI_TIMES.ttl, PATRONI_TIMES.loopWait, PATRONI_TIMES.retryTimeout],
    )
    t.match(dcs, dcsSettings(), 'what the provisioner keeps in etcd is what a new cluster starts with')
    t.equal(y.postgresql.listen, '127.0.0.1,10.20.0.32,10.20.0.30:5432', 'its own address and the virtual one')
    const mb = (size: string) => Number(/^(\d+)(MB|GB)$/.exec(size)![1]) * (size.endsWith('GB') ? 1024 : 1)
    const local = y.postgresql.parameters as Record<string, string>
    const keep = dcsSettings().postgresql.parameters.wal_keep_size
    t.ok(
      mb(keep) - mb(local.max_wal_size) >= 512,
      "a former primary's rewind replays from its last checkpoint (at most max_wal_size back): the new leader keeps that and 512 MB more",
    )
    t.equal(local.wal_keep_size, undefined, 'not in the member’s own file: Patroni would ignore it there')
    t.equal(
      local.wal_sender_timeout,
      `${dcs.ttl - dcs.loop_wait}s`,
      'a primary cut off from its standbys is down (its WAL senders given up) by the earliest another can lead: ttl - loop_wait',
    )
    t.equal(y.postgresql.connect_address, '10.20.0.32:5432')
    t.equal(y.restapi.listen, '10.20.0.32:8008')
    t.ok(y.restapi.authentication.password.length >= 32, 'changes through the REST API need the generated password')
    for (const who of ['replication', 'rewind']) {
      t.match(
        y.postgresql.authentication[who],
        { sslmode: 'verify-ca', sslcert: '/etc/lab-tls/database-2.pem', sslcrl: '/etc/lab-tls/services.crl' },
        `${who}: TLS with the member's certificate, under the CRL`,
      )
    }
    t.equal(y.bootstrap.dcs.postgresql.use_pg_rewind, true, 'a former primary is rewound')
    t.equal(
      y.postgresql.remove_data_directory_on_rewind_failure,
      true,
      'and cloned again where its rewind fails (one cut short leaves it unable to rewind ever after)',
    )
    t.equal(y.postgresql.remove_data_directory_on_diverged_timelines, true)
    t.equal(y.postgresql.parameters.hba_file, '/etc/lab-db/pg_hba.conf', "pg_hba.conf is the provisioner's")
    t.equal(y.postgresql.parameters.ssl_min_protocol_version, 'TLSv1.3')
    t.equal(y.watchdog.mode, 'off')
  },
)

t.test('etcd: one member on each database host, peers on the cloud LAN', async (t) => {
  const e = etcdDefaults(ctx(host(plan, 'database-3')))
  t.match(
    e,
    'ETCD_INITIAL_CLUSTER="database-1=http://10.20.0.31:2380,database-2=http://10.20.0.32:2380,database-3=http://10.20.0.33:2380"',
  )
  t.match(e, 'ETCD_LISTEN_CLIENT_URLS="http://10.20.0.33:2379,http://127.0.0.1:2379"')
  t.match(e, 'ETCD_ENABLE_V2="true"', "Patroni's etcd: speaks the v2 API")
  t.match(e, 'ETCD_PRE_VOTE="true"', 'a member back from isolation does not force an election')
})

t.test('pg_hba.conf: the backends, and the other members for replication and pg_rewind over TLS', async (t) => {
  const lines = (c: Context) =>
    pgHbaConf(c)
      .split('\n')
      .filter((l) => /^hostssl/.test(l))
      .map((l) => l.replace(/\s+/g, ' '))
  t.same(lines(ctx(host(plan, 'database-1'))), [
    'hostssl telemetry ingest 10.20.0.21/32 scram-sha-256 clientcert=verify-full',
    'hostssl telemetry ingest 10.20.0.22/32 scram-sha-256 clientcert=verify-full',
    'hostssl replication replicator 127.0.0.1/32 scram-sha-256 clientcert=verify-ca',
    'hostssl replication replicator 10.20.0.32/32 scram-sha-256 clientcert=verify-ca',
    'hostssl all postgres 10.20.0.32/32 scram-sha-256 clientcert=verify-ca',
    'hostssl replication replicator 10.20.0.33/32 scram-sha-256 clientcert=verify-ca',
    'hostssl all postgres 10.20.0.33/32 scram-sha-256 clientcert=verify-ca',
  ])
  t.same(
    lines(ctx(host(single, 'database'), single)),
    [
      'hostssl telemetry ingest 10.20.0.21/32 scram-sha-256 clientcert=verify-full',
      'hostssl telemetry ingest 10.20.0.22/32 scram-sha-256 clientcert=verify-full',
    ],
    'a single database host admits no replication',
  )
})

t.test('the firewall opens the cluster ports to the other members alone', async (t) => {
  t.same(db.input!(ctx(host(plan, 'database-1'))), [
    'ip saddr { 10.20.0.21, 10.20.0.22 } tcp dport 5432 accept comment "PostgreSQL: from the backends only"',
    `ip saddr { 10.20.0.32, 10.20.0.33 } tcp dport { 5432, 8008, 2379, 2380 } accept comment "the database cluster's members: replication, Patroni, etcd"`,
  ])
  t.same(db.input!(ctx(host(single, 'database'), single)), [
    'ip saddr { 10.20.0.21, 10.20.0.22 } tcp dport 5432 accept comment "PostgreSQL: from the backends only"',
  ])
})

t.test("keepalived follows Patroni's leader; the certificates name the virtual address", async (t) => {
  t.same(db.health!(ctx(host(plan, 'database-2'))), {
    service: 'patroni',
    check: '/usr/bin/curl -fsS -o /dev/null --max-time 1 http://10.20.0.32:8008/primary',
  })
  t.same(altNames(plan, 'database-2'), ['10.20.0.32', '10.20.0.30'])
  t.same(altNames(single, 'database'), ['10.20.0.30'], 'a single host: its own address, which is the service')
})

t.test(
  "a change of Patroni's settings: curl's config, the body quoted, the password from the lab's secrets",
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'patch-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const config = patroniPatch(dir, { synchronous_mode: false })
    t.match(config, /^user = "patroni:[^"\s]{32,}"$/m, 'the generated password')
    t.match(config, /^data = "\{\\"synchronous_mode\\":false\}"$/m, "the body, its quotes escaped for curl's config")
    t.match(config, /^request = "PATCH"$/m)
  },
)

t.test(
  "the cluster's settings in etcd: drift and a paused cluster are patched back, the provisioned ones left alone",
  async (t) => {
    t.equal(dcsPatch(dcsSettings()), undefined, 'as provisioned: nothing to send')
    t.equal(dcsPatch({ ...dcsSettings(), pause: false }), undefined, 'resumed by patronictl (pause false): nothing')
    t.same(
      dcsPatch({ ...dcsSettings(), pause: true }),
      { ...dcsSettings(), pause: null },
      'paused: resumed (the key removed)',
    )
    t.same(dcsPatch({ ...dcsSettings(), ttl: 30 }), { ...dcsSettings(), pause: null }, 'another ttl: set back')
    t.same(dcsPatch({}), { ...dcsSettings(), pause: null }, 'nothing set: everything sent')
    const bootstrapped = {
      ...dcsSettings(),
      postgresql: { use_pg_rewind: true, parameters: { wal_level: 'replica', wal_keep_size: '256MB' } },
    }
    t.same(
      dcsPatch(bootstrapped),
      { ...dcsSettings(), pause: null },
      'a nested value drifted (a cluster made before): patched',
    )
    t.equal(
      dcsPatch({
        ...bootstrapped,
        postgresql: { ...bootstrapped.postgresql, parameters: { wal_level: 'replica', wal_keep_size: '1GB' } },
      }),
      undefined,
      'what else etcd holds beside the provisioned values is left alone',
    )
  },
)
