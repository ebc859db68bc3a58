// Helpers for the telemetry scenarios: HTTP from a lab host (curl over SSH), the IoT
// client's control port, SQL on the db host, and the check every fault scenario ends
// with: every reading the client ever took is stored exactly once.
import type { Test } from 'tap'
import { takeReading } from '../../services/client/device.js'
import { DEVICE_HEADER, SIGNATURE_HEADER, encodeReading, sign } from '../../services/lib/reading.js'
import { deviceKeys } from '../../provision/secrets.js'
import { CLIENT_CONTROL_PORT } from '../../provision/ports.js'
import { MONITOR_PORTS } from '../../provision/ports.js'
import { tlsFiles } from '../../provision/roles/service-tls.js'
import { HEALTH_READ_TIMEOUT_S, UPSTREAM_FAIL_TIMEOUT_S } from '../../provision/roles/proxy.js'
import { dbPaths } from '../../provision/roles/db.js'
import { stateDir } from '../../provision/paths.js'
import { shellQuote as q } from '../../provision/ssh.js'
import { longestStallSql } from '../../scripts/bench/ha.js'
import { waitFor, type Lab } from './lab.js'

export interface HttpAnswer {
  status: number
  headers: Record<string, string>
  body: string
  json?: Record<string, unknown>
}

/** An HTTP request made by a lab host, as a device there would make it. */
export async function httpFrom(
  lab: Lab,
  host: string,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; timeout?: number; curl?: string } = {},
): Promise<HttpAnswer> {
  const h = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `-H ${q(`${k}: ${v}`)}`)
    .join(' ')
  const data = opts.body !== undefined ? '--data-binary @-' : ''
  const r = await lab.sh(
    host,
    `curl -s -S -m ${opts.timeout ?? 10} -X ${opts.method ?? 'GET'} -D - ${opts.curl ?? ''} ${h} ${data} ${q(url)}`,
    opts.body !== undefined ? { stdin: opts.body } : {},
  )
  if (r.code !== 0) return { status: 0, headers: {}, body: r.stderr.trim() }
  const [head, ...rest] = r.stdout.split('\r\n\r\n')
  const lines = head.split('\r\n')
  const headers = Object.fromEntries(
    lines.slice(1).map((l) => [l.split(':')[0].toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  )
  const body = rest.join('\r\n\r\n')
  let json: Record<string, unknown> | undefined
  try {
    json = JSON.parse(body)
  } catch {
    json = undefined
  }
  return { status: Number(lines[0].split(' ')[1]), headers, body, json }
}

/**
 * A TLS request to a backend's readings port, verified as nginx does (the services CA,
 * the name every backend carries), with this client certificate or none.
 */
/**
 * The devices' old server address answers GET /healthz with 200 from the client's host
 * (through its gateway, the tunnel, the proxy, a backend and the database). Right after
 * a fault that failed every backend, nginx may still have them all out (its passive
 * check, fail_timeout) and answer 503 itself ("no live upstreams"): what a device then
 * gets is a 503 with Retry-After, and 200 on a retry. So it asks once a second, for at
 * most fail_timeout and one health check's timeout past the first question; what
 * answered before the 200 is printed, and a failure says who answered what.
 */
export async function assertOldServerAnswers(t: Test, lab: Lab, what: string): Promise<void> {
  const server = lab.plan.networks.find((n) => n.oldServer)!.oldServer!
  const [client] = lab.byRole('iot-client')
  const url = `http://${server.address}:${server.ports[0]}/healthz`
  const boundMs = (UPSTREAM_FAIL_TIMEOUT_S + HEALTH_READ_TIMEOUT_S + 2) * 1000
  const t0 = Date.now()
  const before: string[] = []
  let health = await httpFrom(lab, client.name, url)
  while (health.status !== 200 && Date.now() - t0 < boundMs) {
    before.push(`${health.status} from ${health.headers['x-upstream'] ?? 'nobody'}`)
    await new Promise((r) => setTimeout(r, 1000))
    health = await httpFrom(lab, client.name, url)
  }
  if (before.length)
    t.comment(
      `before the 200, ${before.length} answers in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${before.join('; ')}`,
    )
  t.equal(health.status, 200, `the old server address ${server.address} answers from the IoT LAN${what}`, {
    upstream: health.headers['x-upstream'],
    body: health.body.trim().slice(0, 300),
    tried: before,
  })
}

export function toBackendTls(
  lab: Lab,
  from: string,
  backend: { address: string; port: number },
  path: string,
  client?: { cert: string; key: string },
  opts: Parameters<typeof httpFrom>[3] = {},
): Promise<HttpAnswer> {
  const name = lab.plan.services.ingestTlsName
  const cert = client ? ` --cert ${client.cert} --key ${client.key}` : ''
  return httpFrom(lab, from, `https://${name}:${backend.port}${path}`, {
    ...opts,
    curl: `--cacert ${tlsFiles(from).ca} --resolve ${name}:${backend.port}:${backend.address}${cert}`,
  })
}

/** A request to a backend's readings port as the proxy makes it (its certificate, over TLS, unless the topology turned TLS off). */
export function fromProxy(
  lab: Lab,
  backend: { address: string; port: number },
  path: string,
  opts: Parameters<typeof httpFrom>[3] = {},
): Promise<HttpAnswer> {
  const [proxy] = lab.byRole('proxy')
  if (!lab.plan.telemetry.cloudTls)
    return httpFrom(lab, proxy.name, `http://${backend.address}:${backend.port}${path}`, opts)
  return toBackendTls(lab, proxy.name, backend, path, tlsFiles(proxy.name), opts)
}

/** A backend's counters (its monitoring port, from the backend itself). */
export async function backendMetrics(lab: Lab, backend: { name: string; address: string }): Promise<string> {
  return (await lab.sh(backend.name, `curl -s -m 5 http://${backend.address}:${MONITOR_PORTS.ingest}/metrics`)).stdout
}

/** A device of the load generator's set, for readings the tests make themselves. */
export function testDevice(lab: Lab, index = 1) {
  const id = `bench-${String(index).padStart(4, '0')}`
  if (index > lab.plan.telemetry.benchDevices)
    throw new Error(`the topology has only ${lab.plan.telemetry.benchDevices} bench devices`)
  const key = Buffer.from(deviceKeys(stateDir, [id])[id], 'hex')
  let last = Date.now() * 1000 // never reused across runs
  return {
    id,
    key,
    /** A fresh, correctly signed reading (body and headers). */
    reading(value = 1.5) {
      const body = encodeReading({ device: id, seq: ++last, time: new Date().toISOString(), value })
      return {
        seq: last,
        body,
        headers: { 'content-type': 'application/json', [DEVICE_HEADER]: id, [SIGNATURE_HEADER]: sign(key, body) },
      }
    },
  }
}

/** Where a database host keeps its pg_hba.conf, log and pid file (single host or cluster member alike). */
export async function dbFiles(lab: Lab, host: string): Promise<ReturnType<typeof dbPaths>> {
  const version = (await lab.sh(host, 'ls /usr/lib/postgresql | sort -V | tail -1')).stdout.trim()
  return dbPaths(version, !!lab.plan.services.db?.cluster)
}

/** A query on the database's primary (a cluster's member holding its address: a replica may lag). */
export async function sql(lab: Lab, query: string): Promise<string[][]> {
  const db = await lab.active('db')
  const r = await lab.sh(db.name, `runuser -u postgres -- psql -X -At -F '|' -v ON_ERROR_STOP=1 -d telemetry`, {
    stdin: query,
  })
  if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`)
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('|'))
}

export interface ClientStatus {
  generated: number
  pending: number
  sent: number
  rejected: number
  acked_since_start: number
  retries_since_start: number
  upstreams_since_start: Record<string, number>
  paused: boolean
  last_error: string | null
  devices: Record<string, number>
  outbox: {
    files: number
    bytes: number
    max_bytes: number
    full: string | null
    refused_full_since_start: number
    oldest_pending: string | null
    recovery_ms: number
  }
}

export async function clientStatus(lab: Lab, host?: string, method = 'GET', path = '/status'): Promise<ClientStatus> {
  const name = host ?? lab.byRole('iot-client')[0].name
  let why = ''
  try {
    // A client that is (re)starting answers within seconds.
    return await waitFor(
      `${name}: the client's control port`,
      async () => {
        const r = await lab.sh(name, `curl -s -f -m 5 -X ${method} http://127.0.0.1:${CLIENT_CONTROL_PORT}${path}`)
        why = r.stderr.trim()
        return r.code === 0 && (JSON.parse(r.stdout) as ClientStatus)
      },
      10_000,
      200,
    )
  } catch {
    throw new Error(`${name}: the client's control port does not answer (${why})`)
  }
}

/** Wait until a condition on the client's status holds; returns the status. */
export async function waitStatus(
  lab: Lab,
  what: string,
  ok: (s: ClientStatus) => boolean,
  timeoutMs = 60_000,
): Promise<ClientStatus> {
  let last: ClientStatus | undefined
  try {
    return await waitFor(
      `the client: ${what}`,
      async () => {
        last = await clientStatus(lab)
        return ok(last) && last
      },
      timeoutMs,
    )
  } catch (e) {
    throw new Error(`${(e as Error).message}; its status ${JSON.stringify(last)}`)
  }
}

/** Wait until the client has had more readings acknowledged than `sent` (its count survives restarts). */
export function acknowledgedAfter(lab: Lab, what: string, sent: number, timeoutMs = 60_000): Promise<ClientStatus> {
  return waitStatus(lab, `${what}: readings acknowledged again`, (s) => s.sent > sent, timeoutMs)
}

/** The database's clock now: a scenario's own rows are those received after it. */
export async function dbNow(lab: Lab): Promise<string> {
  return (await sql(lab, 'SELECT now();'))[0][0]
}

/** Where the client's stream stood when a scenario began: its own readings come after. */
export interface StreamMark {
  devices: Record<string, number>
  rejected: number
  generated: number
}

/** Take the mark a scenario's exactly-once check starts from (before it changes anything). */
export async function markStream(lab: Lab): Promise<StreamMark> {
  const s = await clientStatus(lab)
  return { devices: { ...s.devices }, rejected: s.rejected, generated: s.generated }
}

/**
 * Every reading the client took since the mark is stored exactly once: pause the
 * client, let the outbox drain, and compare, device by device, the sequence numbers
 * stored after the mark with mark+1..last. Then resume. Readings from before the mark
 * (the lab's history: an earlier scenario, a user's experiments) are reported in a
 * comment, never judged here, so one reading lost earlier fails the scenario that lost
 * it and no other. Returns the client's status at the check.
 */
export async function assertExactlyOnce(t: Test, lab: Lab, why: string, since: StreamMark): Promise<ClientStatus> {
  await clientStatus(lab, undefined, 'POST', '/pause')
  try {
    const s = await waitStatus(lab, 'outbox drained', (x) => x.pending === 0, 90_000)
    const ids = Object.keys(s.devices)
    const from = (d: string) => since.devices[d] ?? 0
    const rows = await sql(
      lab,
      ids
        .map(
          (d) =>
            `SELECT '${d}', count(*) FILTER (WHERE seq > ${from(d)}), count(DISTINCT seq) FILTER (WHERE seq > ${from(d)}), coalesce(min(seq) FILTER (WHERE seq > ${from(d)}), 0), coalesce(max(seq) FILTER (WHERE seq > ${from(d)}), 0), count(*) FILTER (WHERE seq <= ${from(d)}) FROM readings WHERE device_id = '${d}'`,
        )
        .join(' UNION ALL ') + ' ORDER BY 1;',
    )
    const stored = Object.fromEntries(
      rows.map(([d, n, distinct, min, max]) => [d, { n: +n, distinct: +distinct, min: +min, max: +max }]),
    )
    const want = Object.fromEntries(
      ids.map((d) => {
        const n = s.devices[d] - from(d)
        return [
          d,
          n > 0 ? { n, distinct: n, min: from(d) + 1, max: s.devices[d] } : { n: 0, distinct: 0, min: 0, max: 0 },
        ]
      }),
    )
    const taken = s.generated - since.generated
    t.ok(taken > 0, `${why}: the client took readings during the scenario (${taken})`)
    t.same(
      stored,
      want,
      `${why}: all ${taken} readings taken during the scenario are stored, each once (no gap, no duplicate)`,
    )
    t.equal(s.rejected - since.rejected, 0, `${why}: none was refused`)
    const earlier = rows
      .filter(([d, , , , , before]) => +before !== from(d))
      .map(([d, , , , , before]) => `${d} ${before} of ${from(d)}`)
    t.comment(
      earlier.length
        ? `before this scenario (not judged here): stored ${earlier.join(', ')}`
        : 'before this scenario (not judged here): every earlier reading is stored once',
    )
    return s
  } finally {
    await clientStatus(lab, undefined, 'POST', '/resume')
  }
}

/** The values a device took are the ones stored (the client's sensor is deterministic). */
export async function assertValues(t: Test, lab: Lab, device: string, fromSeq: number, toSeq: number) {
  const rows = await sql(
    lab,
    `SELECT seq, value FROM readings WHERE device_id = '${device}' AND seq BETWEEN ${fromSeq} AND ${toSeq} ORDER BY seq;`,
  )
  const wrong = rows.filter(([seq, value]) => Number(value) !== takeReading(device, Number(seq)).reading.value)
  t.equal(rows.length, toSeq - fromSeq + 1, `${device}: seq ${fromSeq} to ${toSeq} are stored`)
  t.same(wrong, [], `${device}: every stored value is the one the device measured`)
}

/**
 * The longest gap in storage (received_at) of these devices' readings since `since` (a
 * database timestamp, dbNow), in seconds: the first counted from `since` itself, so a
 * stall the window opens in is a stall. What a failover scenario prints (the bench's
 * query: scripts/bench/ha.ts).
 */
export async function longestStall(lab: Lab, since: string, devices: string[]): Promise<number> {
  const [[gap]] = await sql(lab, longestStallSql(since, devices))
  return Number(gap)
}
