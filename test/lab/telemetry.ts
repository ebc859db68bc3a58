// Telemetry as a device fleet relies on it, over the real path: the IoT client's
// readings cross gw-iot's DNAT and the tunnel, nginx spreads them over the backends,
// and PostgreSQL keeps each exactly once with the values the devices measured. Bad
// input sent from the IoT LAN gets its status and a clear error, and nothing stored.
// Only the intended hosts reach each service; secrets are 0600 and the units hardened.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { clientOf } from '../../provision/plan.js'
import { execFileSync } from 'node:child_process'
import { CLIENT_CONTROL_PORT, DB, PROXY_STATUS_PORT } from '../../provision/ports.js'
import { MONITOR_PORTS } from '../../provision/ports.js'
import { repoRoot, stateDir } from '../../provision/paths.js'
import { MAX_BODY_BYTES, batchLine, sign } from '../../services/lib/reading.js'
import { sleep } from '../lib/ipsec.js'
import { openLab, waitFor } from '../lib/lab.js'
import { assertReach, can, cannot, type Expectation } from '../lib/probe.js'
import { logFrom } from '../lib/logs.js'
import {
  assertExactlyOnce,
  assertValues,
  backendMetrics,
  clientStatus,
  dbNow,
  fromProxy,
  httpFrom,
  markStream,
  sql,
  testDevice,
  waitStatus,
} from '../lib/telemetry.js'

const lab = await openLab(t)
if (lab) {
  const [client] = lab.byRole('iot-client')
  // Each member of a proxy pair is configured alike; the first stands for them where any will do.
  const [proxy] = lab.byRole('proxy')
  // The database's primary: a cluster's member holding the service's address.
  const db = await lab.active('db')
  const url = clientOf(lab.plan, client.name)!.url
  const upstreams = lab.plan.services.backends
  const device = testDevice(lab, 1)

  t.test("the client's readings land in PostgreSQL exactly once, with the values measured", async (t) => {
    const mark = await markStream(lab)
    const start = await waitStatus(lab, 'some readings sent', (s) => s.sent > 0)
    const first = Object.keys(start.devices)[0]
    const from = start.devices[first]
    // A few seconds of the stream, through DNAT, the tunnel, nginx and the backends.
    const s = await waitStatus(lab, 'more readings sent', (x) => x.devices[first] >= from + 20)
    t.same(
      Object.keys(s.devices).sort(),
      lab.plan.telemetry.devices
        .filter((d) => d.host === client.name)
        .map((d) => d.id)
        .sort(),
      "the client runs the topology's devices",
    )
    await assertExactlyOnce(t, lab, 'steady stream', mark)
    await assertValues(t, lab, first, Math.max(1, from - 20), from + 20)
    // Only the readings taken while this test watched: a lab with a history (an earlier
    // outage, a paused client) holds older ones that arrived late, as they should.
    const times = await sql(
      lab,
      `SELECT count(*), count(*) FILTER (WHERE abs(extract(epoch FROM received_at - time)) > 30) FROM readings WHERE device_id = '${first}' AND seq > ${from} AND seq <= ${from + 20};`,
    )
    t.equal(times[0][0], '20', 'the 20 readings taken during the test are stored')
    t.equal(times[0][1], '0', "each reading's time is its device's, within seconds of its arrival")
  })

  t.test('every backend handled some of the readings, and nginx says which', async (t) => {
    // Only what arrives from now on: the lab's history has readings from every backend.
    const since = await dbNow(lab)
    const spread = async () =>
      Object.fromEntries(
        (
          await sql(
            lab,
            `SELECT backend, count(*) FROM readings WHERE device_id LIKE '${client.name}-%' AND received_at > '${since}' GROUP BY 1 ORDER BY 1;`,
          )
        ).map(([b, n]) => [b, Number(n)]),
      )
    const byBackend = await waitFor(
      'readings stored by every backend',
      async () => {
        const x = await spread()
        return upstreams.every((b) => x[b.name] > 0) ? x : undefined
      },
      60_000,
      500,
    ).catch(async () => spread())
    for (const b of upstreams)
      t.ok(
        byBackend[b.name] > 0,
        `${b.name} stored ${byBackend[b.name] ?? 0} of the client's readings since the test began`,
      )
    const r = reading()
    // The proxy that serves now (a pair's active member) logs the request.
    const access = await logFrom(lab, (await lab.active('proxy')).name, { file: '/var/log/nginx/access.log' })
    const a = await httpFrom(lab, client.name, url, { method: 'POST', headers: r.headers, body: r.body })
    t.equal(a.status, 201, 'a fresh reading is stored (201)')
    t.ok(
      upstreams.some((b) => a.headers['x-upstream'] === `${b.address}:${b.port}`),
      `X-Upstream names the backend: ${a.headers['x-upstream']}`,
    )
    const again = await httpFrom(lab, client.name, url, { method: 'POST', headers: r.headers, body: r.body })
    t.match(again, { status: 200, json: { status: 'duplicate' } }, 'the same reading again: a success, stored once')
    t.same(await sql(lab, `SELECT count(*) FROM readings WHERE device_id = '${device.id}' AND seq = ${r.seq};`), [
      ['1'],
    ])
    // The two requests' own lines: the one device of this test, after a cursor taken before them.
    const log = (await access()).split('\n').filter((l) => l.includes(`device=${device.id} `))
    t.equal(log.length, 2, 'nginx logged both requests')
    t.ok(
      log.every((l) =>
        upstreams.some(
          (b) => l.includes(`upstream=${b.address}:${b.port} `) || l.includes(`, ${b.address}:${b.port} `),
        ),
      ),
      `nginx's access log records the upstream: ${log[0]}`,
    )
  })

  // Sent from the IoT client's host through the real path (old server address, tunnel, nginx).
  function reading() {
    return device.reading(Math.round(Math.random() * 1000) / 10)
  }
  const badInput: [string, () => { body: string; headers: Record<string, string> }, number, RegExp][] = [
    [
      'a forged signature',
      () => {
        const r = reading()
        return { ...r, headers: { ...r.headers, 'x-signature': `v1=${'0'.repeat(64)}` } }
      },
      401,
      /signature does not match/,
    ],
    [
      'an unknown device',
      () => {
        const r = reading()
        return { ...r, headers: { ...r.headers, 'x-device-id': 'no-such-device' } }
      },
      401,
      /unknown device/,
    ],
    ['malformed JSON', () => signed('{"device":"' + device.id + '","seq":'), 400, /not valid JSON/],
    [
      'a missing field',
      () => signed(JSON.stringify({ device: device.id, seq: Date.now() * 1000, time: new Date().toISOString() })),
      400,
      /"value" is missing/,
    ],
    [
      'an oversized body',
      () =>
        signed(
          JSON.stringify({
            device: device.id,
            seq: Date.now() * 1000,
            time: new Date().toISOString(),
            value: 1,
            pad: 'x'.repeat(MAX_BODY_BYTES * 4),
          }),
        ),
      413,
      /at most 1024 bytes/,
    ],
    [
      'the wrong content type',
      () => {
        const r = reading()
        return { ...r, headers: { ...r.headers, 'content-type': 'text/plain' } }
      },
      415,
      /Content-Type must be application\/json/,
    ],
  ]
  function signed(body: string) {
    const r = device.reading()
    return { body, headers: { ...r.headers, 'x-signature': sign(device.key, body) } }
  }

  t.test('bad input from the IoT LAN: its status, a clear error, nothing stored, the service up', async (t) => {
    const before = (await sql(lab, `SELECT count(*) FROM readings WHERE device_id = '${device.id}';`))[0][0]
    for (const [name, make, status, error] of badInput) {
      const { body, headers } = make()
      const a = await httpFrom(lab, client.name, url, { method: 'POST', headers, body })
      t.equal(a.status, status, `${name}: ${status}`)
      t.match(String(a.json?.error), error, `${name}: ${JSON.stringify(a.json?.error ?? a.body)}`)
    }
    t.equal(
      (await sql(lab, `SELECT count(*) FROM readings WHERE device_id = '${device.id}';`))[0][0],
      before,
      'nothing was stored',
    )
    for (const b of upstreams) {
      t.equal(
        (await lab.sh(b.name, 'systemctl is-active lab-ingest.service')).stdout.trim(),
        'active',
        `${b.name}: the ingest service is still up`,
      )
      const m = await backendMetrics(lab, b)
      t.match(
        m,
        /^ingest_readings_rejected_total\{reason="unauthorized"\} \d+$/m,
        `${b.name}: rejections are counted by reason`,
      )
    }
    const r = reading()
    t.equal(
      (await httpFrom(lab, client.name, url, { method: 'POST', headers: r.headers, body: r.body })).status,
      201,
      'a good reading still goes through',
    )
  })

  t.test("a batch through the real path: each line answered on its own, nginx's limit for batches alone", async (t) => {
    const good = [reading(), reading(), reading()]
    const line = (r: { body: string }, key = device.key) => batchLine(r.body, sign(key, r.body))
    const forged = reading()
    const lines = [...good.map((r) => line(r)), line(forged, Buffer.alloc(32, 9)), line(good[0])]
    // Over 1 KiB in all: the size a single reading may not have, which a batch may.
    const pad = Array.from({ length: 12 }, () => line(reading()))
    const body = [...lines, ...pad].map((l) => l + '\n').join('')
    t.ok(Buffer.byteLength(body) > MAX_BODY_BYTES, `the batch is ${Buffer.byteLength(body)} bytes`)
    const a = await httpFrom(lab, client.name, url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body,
    })
    t.equal(a.status, 200, 'nginx passes a batch over 1 KiB (its own location) and a backend answers it')
    const results = (a.json?.results ?? []) as { line: number; status: string; code: number; error?: string }[]
    t.same(
      results.slice(0, 5).map((r) => [r.line, r.status, r.code]),
      [
        [1, 'stored', 201],
        [2, 'stored', 201],
        [3, 'stored', 201],
        [4, 'retry', 401],
        [5, 'duplicate', 200],
      ],
      'stored, stored, stored, a forged line refused alone, a repeated line a duplicate',
    )
    t.match(results[3].error, /line 4: the signature does not match/)
    const seqs = good.map((r) => r.seq)
    t.same(
      await sql(
        lab,
        `SELECT count(*) FROM readings WHERE device_id = '${device.id}' AND seq IN (${[...seqs, forged.seq].join(',')});`,
      ),
      [['3']],
      'the three good readings stored once, the forged one not at all',
    )
    const single = signed(
      JSON.stringify({
        device: device.id,
        seq: Date.now() * 1000,
        time: new Date().toISOString(),
        value: 1,
        pad: 'x'.repeat(MAX_BODY_BYTES),
      }),
    )
    t.equal(
      (await httpFrom(lab, client.name, url, { method: 'POST', headers: single.headers, body: single.body })).status,
      413,
      'a single reading over 1 KiB is still refused by nginx',
    )
    const direct = await httpFrom(lab, client.name, url.replace(/\/readings$/, '/readings-batch'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body,
    })
    t.equal(direct.status, 404, 'the batch location cannot be asked for by name')
  })

  lab.test(t, 'health, metrics and the read endpoint on each backend', { sameOnVms: true }, async (t) => {
    for (const b of upstreams) {
      const h = await fromProxy(lab, b, '/healthz')
      t.match(h, { status: 200, json: { status: 'ok', backend: b.name } }, `${b.name}: healthy, as the proxy sees it`)
      const monitoring = `http://${b.address}:${MONITOR_PORTS.ingest}`
      t.match(
        await httpFrom(lab, b.name, `${monitoring}/healthz`),
        { status: 200, json: { status: 'ok' } },
        `${b.name}: healthy on its monitoring port too`,
      )
      const m = await httpFrom(lab, b.name, `${monitoring}/metrics`)
      t.match(m.body, /^ingest_readings_accepted_total \d+$/m)
      t.match(m.body, /^ingest_request_duration_seconds_bucket\{le="0\.01"\} \d+$/m)
      t.equal(
        (await httpFrom(lab, b.name, `${monitoring}/devices/${client.name}-01/readings`)).status,
        404,
        `${b.name}: the monitoring port serves no readings`,
      )
    }
    const b = upstreams[0]
    // From the first one the database holds: a lab with a history (a database remade,
    // say) need not hold seq 1.
    const device = `${client.name}-01`
    const [[first]] = await sql(lab, `SELECT min(seq) FROM readings WHERE device_id = '${device}';`)
    const list = await fromProxy(lab, b, `/devices/${device}/readings?limit=3&after=${Number(first) - 1}`)
    t.same(
      (list.json?.readings as { seq: number }[]).map((r) => r.seq),
      [0, 1, 2].map((i) => Number(first) + i),
      `a device's readings, in order (from seq ${first})`,
    )
    const status = await httpFrom(
      lab,
      lab.plan.vpn!.hub,
      `http://${proxy.addresses.cloud}:${PROXY_STATUS_PORT}/nginx_status`,
    )
    t.match(status.body, /Active connections: \d+/, "nginx's stub_status, from the cloud LAN")
  })

  lab.test(t, 'each service is reachable only by the hosts that need it', { sameOnVms: true }, async (t) => {
    // The backends' address for the database: the virtual one of a cluster, else its own.
    const dbAddr = lab.plan.services.db!.address
    const gwCloud = lab.plan.vpn!.hub
    const probes: Expectation[] = upstreams.flatMap((b) => [
      can(proxy.name, b.address, b.port, `control: the proxy reaches ${b.name}:${b.port}`),
      cannot(client.name, b.address, b.port, `the IoT client cannot reach ${b.name} directly (another site's subnet)`),
      cannot(
        gwCloud,
        b.address,
        b.port,
        `${gwCloud}, on the cloud LAN, cannot reach ${b.name} either: only the proxy can`,
      ),
      can(b.name, dbAddr, DB.port, `control: ${b.name} reaches the database`),
    ])
    probes.push(
      cannot(client.name, dbAddr, DB.port, 'the IoT client cannot reach the database'),
      cannot(proxy.name, dbAddr, DB.port, 'nor can the proxy: only the backends'),
      cannot(client.name, proxy.addresses.cloud, PROXY_STATUS_PORT, "nginx's status page is closed to the IoT LAN"),
      cannot(gwCloud, proxy.addresses.cloud, 22, 'SSH to the proxy only from the management network'),
    )
    const cluster = lab.plan.services.db!.cluster
    if (cluster) {
      const [other] = lab.byRole('db').filter((h) => h !== db)
      for (const port of [DB.port, cluster.patroniPort, cluster.etcdClientPort, cluster.etcdPeerPort])
        probes.push(
          can(other.name, db.addresses.cloud, port, `control: ${other.name}, a member, reaches ${db.name}:${port}`),
        )
      for (const port of [cluster.patroniPort, cluster.etcdClientPort, cluster.etcdPeerPort])
        probes.push(
          cannot(
            upstreams[0].name,
            db.addresses.cloud,
            port,
            `${upstreams[0].name} cannot reach ${db.name}:${port}: only the members`,
          ),
          cannot(proxy.name, db.addresses.cloud, port, 'nor can the proxy'),
        )
    }
    await assertReach(t, (h, c) => lab.sh(h, c), probes)
    const listening = (await lab.sh(db.name, `ss -Hltn 'sport = :${DB.port}' | awk '{print $4}' | sort`)).stdout
      .trim()
      .split('\n')
    t.same(
      listening,
      [...new Set([db.addresses.cloud, dbAddr, '127.0.0.1'])].map((a) => `${a}:${DB.port}`).sort(),
      "PostgreSQL listens on the cloud LAN (its own address and the service's) and locally, nowhere else",
    )
    const ctl = (
      await lab.sh(client.name, `ss -Hltn 'sport = :${CLIENT_CONTROL_PORT}' | awk '{print $4}'`)
    ).stdout.trim()
    t.equal(ctl, `127.0.0.1:${CLIENT_CONTROL_PORT}`, 'and only locally')
  })

  lab.test(
    t,
    'secrets are generated, 0600, out of git; services run hardened as their own users',
    { sameOnVms: true },
    async (t) => {
      for (const f of ['device-master-key', 'db-ingest-password']) {
        t.equal(fs.statSync(path.join(stateDir, 'secrets', f)).mode & 0o777, 0o600, `.lab/secrets/${f} is 0600`)
      }
      t.equal(
        execFileSync('git', ['ls-files', '.lab'], { cwd: repoRoot }).toString(),
        '',
        'nothing under .lab is in git',
      )
      const password = fs.readFileSync(path.join(stateDir, 'secrets', 'db-ingest-password'), 'utf8').trim()
      t.ok(password.length >= 40, 'the database password has 256 bits')
      const checks: [string, string, string[]][] = [
        ...upstreams.map((b) => [b.name, 'ingest', ['config.json', 'devices.json']] as [string, string, string[]]),
        [client.name, 'client', ['config.json', 'devices.json']],
      ]
      for (const [host, svc, files] of checks) {
        for (const f of files)
          t.equal(
            (await lab.sh(host, `stat -c '%a %U' /etc/lab-${svc}/${f}`)).stdout.trim(),
            `600 lab-${svc}`,
            `${host}: /etc/lab-${svc}/${f} is 0600 lab-${svc}`,
          )
        const show = (
          await lab.sh(
            host,
            `systemctl show lab-${svc}.service -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p Restart -p ActiveState`,
          )
        ).stdout
        t.match(show, /User=lab-/)
        for (const want of [
          'NoNewPrivileges=yes',
          'ProtectSystem=strict',
          'PrivateTmp=yes',
          'Restart=always',
          'ActiveState=active',
        ])
          t.match(show, want, `${host}: lab-${svc} ${want}`)
        t.equal(
          (await lab.sh(host, `ps -o user= -C node | sort -u`)).stdout.trim(),
          `lab-${svc}`,
          `${host}: node runs as lab-${svc}, not root`,
        )
        t.notMatch(
          (await lab.sh(host, `journalctl -u lab-${svc}.service --no-pager -q`)).stdout,
          password,
          `${host}: the journal never shows the database password`,
        )
      }
      t.equal(
        (await lab.sh(client.name, `grep -rlF -- ${password} /etc /var/lib 2>/dev/null`)).stdout.trim(),
        '',
        'the IoT client holds no copy of the database password',
      )
    },
  )

  lab.test(t, 'the client reports its progress and pauses on request', { sameOnVms: true }, async (t) => {
    const paused = await clientStatus(lab, undefined, 'POST', '/pause')
    t.teardown(() => clientStatus(lab, undefined, 'POST', '/resume'))
    t.equal(paused.paused, true)
    await sleep(lab.plan.telemetry.intervalMs * 3)
    const a = await clientStatus(lab)
    await sleep(lab.plan.telemetry.intervalMs * 3)
    const b = await clientStatus(lab)
    t.equal(b.generated, a.generated, 'paused: no new readings')
    t.equal(b.sent + b.pending + b.rejected, b.generated, 'generated = sent + pending + rejected')
    const resumed = await clientStatus(lab, undefined, 'POST', '/resume')
    t.equal(resumed.paused, false)
    await waitStatus(lab, 'readings again', (s) => s.generated > b.generated, 10_000)
    t.pass('resumed: readings again')
  })
}
