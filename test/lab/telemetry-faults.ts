// Faults under a continuous stream of readings (backends, a backend's database link,
// proxy, database, gateways, the client itself): the IoT client keeps taking readings
// throughout each one, and each scenario ends with every reading taken since it began
// stored exactly once (compared device by device with mark+1..last seq). The client's outbox and
// retries, nginx's retries to the next backend, and idempotent storage make it so.
// Where the topology has a monitor, each fault's alert fires during it and resolves after.
import t, { type Test } from 'tap'
import { DB } from '../../provision/ports.js'
import { sleep, waitForTunnel } from '../lib/ipsec.js'
import { cutTcp, uncutTcp } from '../lib/faults.js'
import { openLab, waitFor } from '../lib/lab.js'
import { logFrom } from '../lib/logs.js'
import { alertsOf } from '../lib/monitor.js'
import {
  acknowledgedAfter,
  assertExactlyOnce,
  backendMetrics,
  clientStatus,
  dbNow,
  markStream,
  sql,
  waitStatus,
} from '../lib/telemetry.js'

const opened = await openLab(t)
if (opened) {
  const lab = opened
  const [client] = lab.byRole('iot-client')
  const proxies = lab.byRole('proxy')
  // PostgreSQL's unit: Debian's on a single host; Patroni, which runs it, on a cluster's members.
  const dbHosts = lab.byRole('db')
  const dbCluster = lab.plan.services.db?.cluster
  const dbUnit = dbCluster ? 'patroni.service' : 'postgresql.service'
  const upstreams = lab.plan.services.backends
  const interval = lab.plan.telemetry.intervalMs
  const ingest = (host: string, action: string) => lab.sh(host, `systemctl ${action} lab-ingest.service`)
  const alert = alertsOf(lab)
  /** The alert fires (during the fault), then resolves (after); nothing without a monitor. */
  const fires = (t: Test, name: string, labels: Record<string, string>) => alert(t, name, labels, 'firing')
  const resolves = (t: Test, name: string, labels: Record<string, string>) => alert(t, name, labels, 'resolved')

  // Whatever a scenario did, every service is running again afterwards.
  t.afterEach(async () => {
    for (const b of upstreams) await ingest(b.name, 'start')
    for (const p of proxies) await lab.sh(p.name, 'systemctl start nginx.service')
    for (const h of dbHosts) await lab.sh(h.name, `systemctl start ${dbUnit}`)
    for (const b of upstreams) await reconnect(b.name)
    await lab.sh(client.name, 'systemctl start lab-client.service')
    for (const gw of lab.byRole('gateway')) await lab.sh(gw.name, 'systemctl start strongswan.service')
    await clientStatus(lab, undefined, 'POST', '/resume')
  })

  const flowing = (what: string, sent: number) => acknowledgedAfter(lab, what, sent)
  /**
   * The devices' requests (POST /readings, one reading or a batch) in the access log from
   * a cursor taken now; the monitor's scrapes of nginx's status page, answered by nginx
   * itself (upstream=-), are in the same log and are not readings.
   */
  const accessLogFrom = async () => {
    // The proxy serving now (a pair's active member) logs the devices' requests.
    const read = await logFrom(lab, (await lab.active('proxy')).name, { file: '/var/log/nginx/access.log' })
    return async () => (await read()).split('\n').filter((l) => l.includes('"POST /readings'))
  }
  /** The backend that answered a request (the last one nginx tried) and its status. */
  const answered = (line: string) => {
    const m = /upstream=([^ ,]+(?:, [^ ,]+)*) upstream_status=([^ ,]+(?:, [^ ,]+)*)/.exec(line)
    if (!m) return undefined
    return { by: m[1].split(', ').at(-1)!, status: m[2].split(', ').at(-1)!, tried: m[1].split(', ') }
  }

  /** Readings were taken and acknowledged during the whole scenario. */
  async function streaming(t: Test, what: string) {
    const a = await clientStatus(lab)
    return async () => {
      const b = await clientStatus(lab)
      t.ok(b.generated - a.generated >= 4, `${what}: readings were taken throughout (${b.generated - a.generated})`)
    }
  }

  t.test('a backend stopped, then started again', async (t) => {
    const mark = await markStream(lab)
    const done = await streaming(t, 'backend down')
    const [down, ...others] = upstreams
    const before = await clientStatus(lab)
    const devices = Object.keys(before.devices).length
    await ingest(down.name, 'stop')
    const log = await accessLogFrom()
    // Two rounds of every device's readings acknowledged with the backend down.
    const s1 = await waitStatus(
      lab,
      `readings acknowledged with ${down.name} down`,
      (s) => s.sent >= before.sent + 2 * devices,
      60_000,
    )
    // nginx retries a failed POST on the next backend (idempotent ingest makes it safe),
    // so the device never sees the failure.
    if (others.length)
      t.equal(
        s1.retries_since_start,
        before.retries_since_start,
        `nginx retried on ${others.map((o) => o.name).join(', ')}: the client had to retry nothing`,
      )
    t.pass(`with ${down.name} down, readings are still acknowledged (${s1.sent - before.sent})`)
    t.ok(s1.pending <= 4 * devices, `and do not pile up (${s1.pending} pending)`)
    if (others.length) {
      // Requests, not readings: the client sends what is due in one batch per request.
      const parsed = async () => (await log()).map(answered).filter((x) => !!x)
      const lines = await waitFor(
        'three requests logged by nginx since the stop',
        async () => {
          const x = await parsed()
          return x.length >= 3 ? x : undefined
        },
        30_000,
        500,
      ).catch(parsed)
      const byDown = lines.filter((x) => x.by === `${down.address}:${down.port}`)
      t.ok(lines.length >= 3, `nginx logged the requests made meanwhile (${lines.length})`)
      t.same(
        byDown,
        [],
        `none was answered by ${down.name}: every one by ${others.map((o) => o.name).join(', ')} (${lines.filter((x) => x.tried.length > 1).length} after a retry)`,
      )
      t.same(
        lines.filter((x) => !/^20[01]$/.test(x.status)),
        [],
        'and every one answered with success',
      )
    }
    await fires(t, 'LabBackendDown', { host: down.name })
    await fires(t, 'LabTargetDown', { job: 'ingest', host: down.name })
    const startedAt = await dbNow(lab)
    await ingest(down.name, 'start')
    const n = await waitFor(
      `${down.name} storing readings again`,
      async () =>
        Number(
          (
            await sql(
              lab,
              `SELECT count(*) FROM readings WHERE backend = '${down.name}' AND received_at > '${startedAt}';`,
            )
          )[0][0],
        ) || undefined,
      60_000,
      500,
    )
    t.pass(`${down.name} stores readings again (${n})`)
    await done()
    await assertExactlyOnce(t, lab, `${down.name} stopped and started`, mark)
    await resolves(t, 'LabBackendDown', { host: down.name })
  })

  const CUT = 'test: database cut off'
  const reconnect = (host: string) => uncutTcp(lab, host, CUT)

  lab.test(
    t,
    'a backend loses its database: nginx retries its 503s on the others, the devices see none',
    { backends: 2 },
    async (t) => {
      const [cut, ...others] = upstreams
      const mark = await markStream(lab)
      // The address the backends connect to: the cluster's virtual one, else the host's own.
      const dbAddr = lab.plan.services.db!.address
      t.teardown(() => reconnect(cut.name))
      const done = await streaming(t, 'database cut off from a backend')
      const before = await clientStatus(lab)
      const errors = async () => Number(/^ingest_store_errors_total (\d+)$/m.exec(await backendMetrics(lab, cut))?.[1])
      const errorsBefore = await errors()
      await cutTcp(lab, cut.name, dbAddr, DB.port, CUT)
      t.pass(`${cut.name}'s link to the database is cut`)
      const errorsAfter = await waitFor(
        `${cut.name} answering 503 for want of its database`,
        async () => {
          const n = await errors()
          return n > errorsBefore ? n : undefined
        },
        60_000,
        500,
      )
      t.pass(`${cut.name} answered 503 for want of its database (${errorsBefore} → ${errorsAfter} store errors)`)
      const s = await flowing('database cut off from a backend', (await clientStatus(lab)).sent)
      t.ok(s.sent > before.sent, `readings are still acknowledged (${s.sent - before.sent})`)
      t.equal(
        s.retries_since_start,
        before.retries_since_start,
        `nginx retried them on ${others.map((o) => o.name).join(', ')} (safe: ingest is idempotent), so the client had to retry nothing`,
      )
      await fires(t, 'LabIngestStoreErrors', { host: cut.name })
      await reconnect(cut.name)
      await done()
      await assertExactlyOnce(t, lab, `${cut.name} cut off from the database, then reconnected`, mark)
      await resolves(t, 'LabIngestStoreErrors', { host: cut.name })
    },
  )

  t.test('all backends stopped for a while', async (t) => {
    const mark = await markStream(lab)
    const done = await streaming(t, 'no backend')
    for (const b of upstreams) await ingest(b.name, 'stop')
    // Two rounds of every device's readings waiting, and the client told why.
    const devices = Object.keys(mark.devices).length
    const s = await waitStatus(
      lab,
      'readings waiting for a backend',
      (x) => x.pending >= 2 * devices && /503|no backend/.test(x.last_error ?? ''),
      60_000,
    )
    t.ok(s.pending > 0, `with no backend, readings wait in the outbox (${s.pending} pending)`)
    t.match(s.last_error ?? '', /503|no backend/, `the client knows why: ${s.last_error}`)
    await fires(t, 'LabReadingsBacklog', { host: client.name })
    const held = (await clientStatus(lab)).sent
    for (const b of upstreams) await ingest(b.name, 'start')
    await flowing('backends started', held)
    await done()
    await assertExactlyOnce(t, lab, 'all backends stopped and started', mark)
    await resolves(t, 'LabReadingsBacklog', { host: client.name })
  })

  /**
   * A restart of the unit on the first host (until readings are acknowledged again), then
   * a stop on every host given until readings wait in the outbox for it (during which
   * `whileDown` looks), then a start (until they flow). A pair's members are all given:
   * one stopped alone is a failover (test/lab/failover.ts), not an outage.
   */
  async function restartThenOutage(
    t: Test,
    hosts: string[],
    unit: string,
    whileDown: (pending: number) => Promise<void> = async () => {},
  ) {
    const [first] = hosts
    const all = hosts.join(' and ')
    const sent = (await clientStatus(lab)).sent
    await lab.sh(first, `systemctl restart ${unit}`)
    await flowing(`${first} restarted`, sent)
    const devices = Object.keys((await clientStatus(lab)).devices).length
    for (const h of hosts) await lab.sh(h, `systemctl stop ${unit}`)
    const waiting = await waitStatus(
      lab,
      `readings waiting while ${unit} is stopped`,
      (s) => s.pending >= 2 * devices,
      60_000,
    )
    t.pass(`with ${unit} stopped on ${all}, readings wait in the outbox (${waiting.pending} pending)`)
    await whileDown(waiting.pending)
    const held = (await clientStatus(lab)).sent
    for (const h of hosts) await lab.sh(h, `systemctl start ${unit}`)
    await flowing(`${all} started`, held)
  }

  t.test('the proxy restarted', async (t) => {
    const mark = await markStream(lab)
    const done = await streaming(t, 'proxy restart')
    const serving = await lab.active('proxy')
    const others = proxies.filter((p) => p !== serving).map((p) => p.name)
    await restartThenOutage(t, [serving.name, ...others], 'nginx.service')
    await done()
    await assertExactlyOnce(t, lab, 'proxy restarted, then stopped until readings waited for it', mark)
  })

  // A cluster's primary restarted is a switchover to its synchronous standby; then the
  // whole cluster stopped is an outage, and it elects a primary again when started.
  t.test('the database restarted', async (t) => {
    const mark = await markStream(lab)
    const done = await streaming(t, 'database restart')
    const db = await lab.active('db')
    const others = dbHosts.filter((h) => h !== db).map((h) => h.name)
    await restartThenOutage(t, [db.name, ...others], dbUnit, async () => {
      await fires(t, 'LabDatabaseDown', { host: db.name })
      if (dbCluster) await fires(t, 'LabDbNoPrimary', { job: 'patroni' })
    })
    await done()
    await assertExactlyOnce(
      t,
      lab,
      'database restarted, then stopped until readings waited (and the monitor saw it)',
      mark,
    )
    await resolves(t, 'LabDatabaseDown', { host: db.name })
    if (dbCluster) await resolves(t, 'LabDbNoPrimary', { job: 'patroni' })
  })

  t.test('each gateway restarted: the tunnel comes back, and nothing is lost', async (t) => {
    const tunnel = lab.plan.vpn!.tunnels[0]
    const mark = await markStream(lab)
    const done = await streaming(t, 'gateway restarts')
    for (const gw of [tunnel.site, tunnel.hub]) {
      const sent = (await clientStatus(lab)).sent
      await lab.sh(gw, 'systemctl restart strongswan.service')
      await waitForTunnel(lab, tunnel, 60_000)
      await flowing(`${gw} restarted`, sent)
    }
    await done()
    await assertExactlyOnce(t, lab, 'both gateways restarted', mark)
  })

  t.test('the client restarted mid-stream, gracefully and by a crash', async (t) => {
    const mark = await markStream(lab)
    const restarts = async () =>
      Number((await lab.sh(client.name, 'systemctl show -P NRestarts lab-client.service')).stdout.trim())
    const done = await streaming(t, 'client restarts')
    await lab.sh(client.name, 'systemctl restart lab-client.service')
    await waitStatus(lab, 'back after restart', (s) => s.acked_since_start > 0, 20_000)
    // Taken after the graceful restart, which systemd does not count and which resets
    // NRestarts: what grows from here is the crashes' automatic restarts.
    const restartsBefore = await restarts()
    // A crash: SIGKILL, no chance to tidy up; systemd starts it again.
    for (let i = 0; i < 3; i++) {
      await sleep(700 + Math.random() * interval * 2)
      await lab.sh(client.name, 'systemctl kill -s KILL lab-client.service')
    }
    await waitStatus(lab, 'restarted after the crashes', (s) => s.acked_since_start > 0, 20_000)
    t.ok(
      (await restarts()) >= restartsBefore + 1,
      `systemd restarted it after the crashes (NRestarts ${restartsBefore} → ${await restarts()})`,
    )
    await done()
    await assertExactlyOnce(t, lab, 'client restarted and killed three times', mark)
  })
}
