// Faults under a continuous stream of readings (backends, a backend's database link,
// proxy, database, gateways, the client itself): the IoT client keeps taking readings
// throughout each one, and each scenario ends with every reading it ever took stored
// exactly once (compared device by device with 1..last seq). The client's outbox and
// retries, nginx's retries to the next backend, and idempotent storage make it so.
// Where the topology has a monitor, each fault's alert fires during it and resolves after.
import t, { type Test } from 'tap'
import { DB, backends } from '../../provision/roles/telemetry.js'
import { addressOn } from '../../provision/topology.js'
import { sleep, waitForTunnel } from '../lib/ipsec.js'
import { cutTcp, uncutTcp } from '../lib/faults.js'
import { openLab } from '../lib/lab.js'
import { alertsOf } from '../lib/monitor.js'
import { assertExactlyOnce, backendMetrics, clientStatus, waitStatus } from '../lib/telemetry.js'

const opened = await openLab(t)
if (opened) {
  const lab = opened
  const [client] = lab.byRole('iot-client')
  const [proxy] = lab.byRole('proxy')
  const [db] = lab.byRole('db')
  const upstreams = backends(lab.topology)
  const interval = lab.topology.telemetry.intervalMs
  const ingest = (host: string, action: string) => lab.sh(host, `systemctl ${action} lab-ingest.service`)
  const alert = alertsOf(lab)
  /** The alert fires (during the fault), then resolves (after); nothing without a monitor. */
  const fires = (t: Test, name: string, labels: Record<string, string>) => alert(t, name, labels, 'firing')
  const resolves = (t: Test, name: string, labels: Record<string, string>) => alert(t, name, labels, 'resolved')

  // Whatever a scenario did, every service is running again afterwards.
  t.afterEach(async () => {
    for (const b of upstreams) await ingest(b.name, 'start')
    await lab.sh(proxy.name, 'systemctl start nginx.service')
    await lab.sh(db.name, 'systemctl start postgresql.service')
    for (const b of upstreams) await reconnect(b.name)
    await lab.sh(client.name, 'systemctl start lab-client.service')
    for (const gw of lab.byRole('gateway')) await lab.sh(gw.name, 'systemctl start strongswan.service')
    await clientStatus(lab, undefined, 'POST', '/resume')
  })

  /** Readings were taken and acknowledged during the whole scenario. */
  async function streaming(t: Test, what: string) {
    const a = await clientStatus(lab)
    return async () => {
      const b = await clientStatus(lab)
      t.ok(b.generated - a.generated >= 4, `${what}: readings were taken throughout (${b.generated - a.generated})`)
    }
  }

  t.test('a backend stopped, then started again', async (t) => {
    await assertExactlyOnce(t, lab, 'before')
    const done = await streaming(t, 'backend down')
    const [down, ...others] = upstreams
    const before = await clientStatus(lab)
    await ingest(down.name, 'stop')
    const s0 = await clientStatus(lab)
    await sleep(4000)
    const s1 = await clientStatus(lab)
    // nginx retries a failed POST on the next backend (idempotent ingest makes it safe),
    // so the device never sees the failure.
    if (others.length) t.equal(s1.retries_since_start, before.retries_since_start, `nginx retried on ${others.map((o) => o.name).join(', ')}: the client had to retry nothing`)
    t.ok(s1.acked_since_start - s0.acked_since_start > 0, `with ${down.name} down, readings are still acknowledged (${s1.acked_since_start - s0.acked_since_start} in 4 s)`)
    t.ok(s1.pending <= 4 * Object.keys(s1.devices).length, `and do not pile up (${s1.pending} pending)`)
    const log = (await lab.sh(proxy.name, 'tail -n 50 /var/log/nginx/access.log')).stdout.trim().split('\n').slice(-10)
    if (others.length) t.ok(log.every((l) => !l.includes(`upstream=${down.address}:${down.port} `)), `nginx sends nothing more to ${down.name}`)
    await fires(t, 'LabBackendDown', { host: down.name })
    await fires(t, 'LabTargetDown', { job: 'ingest', host: down.name })
    await ingest(down.name, 'start')
    await sleep(2000)
    await done()
    await assertExactlyOnce(t, lab, `${down.name} stopped and started`)
    await resolves(t, 'LabBackendDown', { host: down.name })
  })

  const CUT = 'test: database cut off'
  const reconnect = (host: string) => uncutTcp(lab, host, CUT)

  t.test('a backend loses its database: nginx retries its 503s on the others, the devices see none', async (t) => {
    const [cut, ...others] = upstreams
    if (others.length === 0) { t.plan(0, 'one backend only: nowhere to retry'); return }
    const dbAddr = addressOn(db, lab.topology.networks.find((n) => n.kind === 'lan' && db.interfaces.some((i) => i.network === n.name))!.name)!
    t.teardown(() => reconnect(cut.name))
    const done = await streaming(t, 'database cut off from a backend')
    const before = await clientStatus(lab)
    const errors = async () => Number(/^ingest_store_errors_total (\d+)$/m.exec(await backendMetrics(lab, cut))?.[1])
    const errorsBefore = await errors()
    await cutTcp(lab, cut.name, dbAddr, DB.port, CUT)
    t.pass(`${cut.name}'s link to the database is cut`)
    await sleep(5000)
    const s = await clientStatus(lab)
    const errorsAfter = await errors()
    t.ok(errorsAfter > errorsBefore, `${cut.name} answered 503 for want of its database (${errorsBefore} → ${errorsAfter} store errors)`)
    t.ok(s.acked_since_start > before.acked_since_start, `readings are still acknowledged (${s.acked_since_start - before.acked_since_start} in 5 s)`)
    t.equal(s.retries_since_start, before.retries_since_start, `nginx retried them on ${others.map((o) => o.name).join(', ')} (safe: ingest is idempotent), so the client had to retry nothing`)
    await fires(t, 'LabIngestStoreErrors', { host: cut.name })
    await reconnect(cut.name)
    await done()
    await assertExactlyOnce(t, lab, `${cut.name} cut off from the database, then reconnected`)
    await resolves(t, 'LabIngestStoreErrors', { host: cut.name })
  })

  t.test('all backends stopped for a while', async (t) => {
    const done = await streaming(t, 'no backend')
    for (const b of upstreams) await ingest(b.name, 'stop')
    await sleep(Math.max(5000, interval * 10))
    const s = await clientStatus(lab)
    t.ok(s.pending > 0, `with no backend, readings wait in the outbox (${s.pending} pending)`)
    t.match(s.last_error ?? '', /503|no backend/, `the client knows why: ${s.last_error}`)
    await fires(t, 'LabReadingsBacklog', { host: client.name })
    for (const b of upstreams) await ingest(b.name, 'start')
    await done()
    await assertExactlyOnce(t, lab, 'all backends stopped and started')
    await resolves(t, 'LabReadingsBacklog', { host: client.name })
  })

  /** A restart, then a stop of some seconds (during which `whileDown` looks), then a start. */
  async function restartThenOutage(host: string, unit: string, downMs: number, whileDown: () => Promise<void> = async () => {}) {
    await lab.sh(host, `systemctl restart ${unit}`)
    await sleep(2000)
    await lab.sh(host, `systemctl stop ${unit}`)
    await sleep(downMs)
    await whileDown()
    await lab.sh(host, `systemctl start ${unit}`)
  }

  t.test('the proxy restarted', async (t) => {
    const done = await streaming(t, 'proxy restart')
    await restartThenOutage(proxy.name, 'nginx.service', 3000)
    await sleep(2000)
    await done()
    await assertExactlyOnce(t, lab, 'proxy restarted, and stopped for 3 s')
  })

  t.test('the database restarted', async (t) => {
    const done = await streaming(t, 'database restart')
    await restartThenOutage(db.name, 'postgresql.service', 4000, async () => {
      const s = await clientStatus(lab)
      t.ok(s.pending > 0, `with the database down, readings wait in the outbox (${s.pending} pending)`)
      await fires(t, 'LabDatabaseDown', { host: db.name })
    })
    await done()
    await assertExactlyOnce(t, lab, 'database restarted, and stopped (4 s, or until the monitor saw it)')
    await resolves(t, 'LabDatabaseDown', { host: db.name })
  })

  t.test('each gateway restarted: the tunnel comes back, and nothing is lost', async (t) => {
    const tunnel = lab.topology.vpn!.tunnels[0]
    const done = await streaming(t, 'gateway restarts')
    for (const gw of [tunnel.site, tunnel.hub]) {
      await lab.sh(gw, 'systemctl restart strongswan.service')
      await waitForTunnel(lab, tunnel)
      await sleep(1000)
    }
    await done()
    await assertExactlyOnce(t, lab, 'both gateways restarted')
  })

  t.test('the client restarted mid-stream, gracefully and by a crash', async (t) => {
    const done = await streaming(t, 'client restarts')
    await lab.sh(client.name, 'systemctl restart lab-client.service')
    await waitStatus(lab, 'back after restart', (s) => s.acked_since_start > 0, 20_000)
    // A crash: SIGKILL, no chance to tidy up; systemd starts it again.
    for (let i = 0; i < 3; i++) {
      await sleep(700 + Math.random() * interval * 2)
      await lab.sh(client.name, 'systemctl kill -s KILL lab-client.service')
    }
    await waitStatus(lab, 'restarted after the crashes', (s) => s.acked_since_start > 0, 20_000)
    t.equal((await lab.sh(client.name, 'systemctl show -P NRestarts lab-client.service')).stdout.trim() !== '0', true, 'systemd restarted it')
    await done()
    await assertExactlyOnce(t, lab, 'client restarted and killed three times')
  })
}
