// lab-client: the IoT client on an iot-client host (systemd unit lab-client.service).
// Simulates the topology's devices: every interval each device takes a reading, the
// reading goes to the durable outbox, and the sender delivers it to the server (by
// default the old server address, which the site gateway forwards through the tunnel).
// A control port on localhost reports progress and pauses or resumes the readings:
//   GET /status   {generated, sent, pending, rejected, devices: {id: last seq}, outbox, ...}
//   GET /metrics  the same as Prometheus text
//   POST /pause   stop taking readings (sending goes on, so the outbox drains)
//   POST /resume
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { log } from '../lib/log.js'
import { counterOf, gaugeOf, serviceRegistry } from '../lib/metrics.js'
import { takeReading, type Device } from './device.js'
import { Outbox, OutboxFullError } from './outbox.js'
import { Sender } from './sender.js'

interface Config {
  url: string
  intervalMs: number
  concurrency: number
  /** Readings per request (1: one per request). */
  batch?: number
  /** The outbox's cap, MiB (telemetry.outbox_max_mb). */
  outboxMaxMb?: number
  stateDir: string
  control: { address: string; port: number }
  /** GET /metrics alone, for the monitor (on the LAN address). */
  metrics?: { address: string; port: number }
  devicesFile: string
}

const config = JSON.parse(fs.readFileSync(process.argv[2] ?? '/etc/lab-client/config.json', 'utf8')) as Config
const devices: Device[] = Object.entries(
  JSON.parse(fs.readFileSync(config.devicesFile, 'utf8')) as Record<string, string>,
).map(([id, hex]) => ({ id, key: Buffer.from(hex, 'hex') }))
const keys = new Map(devices.map((d) => [d.id, d.key]))

const outbox = new Outbox(path.join(config.stateDir, 'outbox'), {
  maxBytes: Math.round((config.outboxMaxMb ?? 1024) * 1024 * 1024),
})
const recovered = outbox.open()
let paused = false
const upstreams: Record<string, number> = {}

const sender = new Sender({
  url: config.url,
  concurrency: config.concurrency,
  batch: config.batch ?? 1,
  source: outbox,
  log,
  keyOf: (d) => {
    const k = keys.get(d)
    if (!k) throw new Error(`no key for ${d} any more`)
    return k
  },
  onAck: (e, _status, upstream) => {
    outbox.ack(e)
    if (upstream)
      for (const u of upstream
        .split(/[,:]\s*/)
        .filter((x) => /^\d+\.\d+\.\d+\.\d+$/.test(x))
        .slice(-1))
        upstreams[u] = (upstreams[u] ?? 0) + 1
  },
  onReject: (e, status, reason) => {
    log(`${e.device} seq ${e.seq} refused for good (HTTP ${status}): ${reason}; kept in rejected.jsonl`)
    outbox.reject(e, status, reason)
  },
  onRetry: (() => {
    let last = 0
    return (_e, why) => {
      if (Date.now() - last > 5000) {
        last = Date.now()
        log(`delivery failing, retrying with backoff: ${why} (${outbox.pending()} pending)`)
      }
    }
  })(),
})
log(
  `${devices.length} devices, every ${config.intervalMs} ms, to ${config.url}, up to ${config.batch ?? 1} readings per request; ` +
    `${recovered} readings recovered from the outbox (${outbox.files()} files, ${outbox.bytes()} bytes) in ${Math.round(outbox.recoveryMs)} ms`,
)
void sender.start()
// The acknowledgement cursor is a hint, written at most once a second.
setInterval(() => {
  try {
    outbox.flush()
  } catch (e) {
    log(`outbox cursor not written: ${(e as Error).message}`)
  }
}, 1000).unref()

let timer: NodeJS.Timeout | undefined
function tick() {
  const started = Date.now()
  if (!paused) {
    const wasFull = outbox.full
    try {
      const now = new Date()
      outbox.append(devices.map((d) => takeReading(d.id, outbox.last(d.id) + 1, now)))
      sender.notify()
      if (wasFull) log(`the outbox has room again: taking readings (${outbox.refusedFull} not taken while it was full)`)
    } catch (e) {
      // Full: these readings are not taken (counted); the ones already taken are all kept.
      if (!(e instanceof OutboxFullError)) log(`readings not taken this interval: ${(e as Error).message}`)
      else if (!wasFull)
        log(`readings not taken: ${e.message}; the ones already taken are kept, taking resumes when there is room`)
    }
  }
  timer = setTimeout(tick, Math.max(0, config.intervalMs - (Date.now() - started)))
}
tick()

const status = () => ({
  generated: outbox.generated(),
  pending: outbox.pending(),
  rejected: outbox.rejectedCount,
  sent: outbox.generated() - outbox.pending() - outbox.rejectedCount,
  acked_since_start: outbox.ackedCount,
  retries_since_start: sender.retries,
  upstreams_since_start: upstreams,
  last_error: sender.lastError ?? null,
  paused,
  devices: outbox.devices(),
  outbox: {
    files: outbox.files(),
    bytes: outbox.bytes(),
    max_bytes: outbox.maxBytes,
    full: outbox.full ?? null,
    refused_full_since_start: outbox.refusedFull,
    oldest_pending: oldest(),
    recovery_ms: Math.round(outbox.recoveryMs),
  },
})

function oldest() {
  const t = outbox.oldestPending()
  return t === undefined ? null : new Date(t).toISOString()
}

const metrics = serviceRegistry()
counterOf(
  metrics,
  'lab_client_readings_taken_total',
  "Readings taken and made durable (all time: the devices' sequence numbers)",
  () => outbox.generated(),
)
gaugeOf(metrics, 'lab_client_readings_pending', 'Readings in the outbox not yet acknowledged', () => outbox.pending())
counterOf(
  metrics,
  'lab_client_readings_acked_total',
  'Readings acknowledged by the server since start',
  () => outbox.ackedCount,
)
counterOf(
  metrics,
  'lab_client_readings_rejected_total',
  'Readings refused for good by the server (kept in rejected.jsonl)',
  () => outbox.rejectedCount,
)
counterOf(
  metrics,
  'lab_client_readings_not_taken_full_total',
  'Readings not taken because the outbox or the disk was full, since start',
  () => outbox.refusedFull,
)
counterOf(
  metrics,
  'lab_client_send_retries_total',
  'Readings sent again after a failure, since start',
  () => sender.retries,
)
gaugeOf(
  metrics,
  'lab_client_oldest_pending_age_seconds',
  'Age of the oldest reading not yet acknowledged (0: none)',
  () => {
    const t = outbox.oldestPending()
    return t === undefined ? 0 : Math.max(0, (Date.now() - t) / 1000)
  },
)
gaugeOf(metrics, 'lab_client_outbox_bytes', "Bytes of the outbox's files", () => outbox.bytes())
gaugeOf(
  metrics,
  'lab_client_outbox_max_bytes',
  "The outbox's cap in bytes (telemetry.outbox_max_mb)",
  () => outbox.maxBytes,
)
gaugeOf(metrics, 'lab_client_outbox_full', '1 while new readings are refused for want of room', () =>
  outbox.full ? 1 : 0,
)

let lastReport = ''
setInterval(() => {
  const s = status()
  const line = `generated ${s.generated}, sent ${s.sent}, pending ${s.pending}, rejected ${s.rejected}`
  if (line !== lastReport) log(line)
  lastReport = line
}, 30_000).unref()

const control = http.createServer((req, res) => {
  const reply = (code: number, body: object) => {
    res.writeHead(code, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body) + '\n')
  }
  if (req.method === 'GET' && req.url === '/status') return reply(200, status())
  if (req.method === 'GET' && req.url === '/metrics') return void sendMetrics(res)
  if (req.method === 'POST' && (req.url === '/pause' || req.url === '/resume')) {
    paused = req.url === '/pause'
    log(paused ? 'paused: no new readings' : 'resumed')
    return reply(200, status())
  }
  reply(404, { error: 'GET /status, GET /metrics, POST /pause, POST /resume' })
})
control.listen(config.control.port, config.control.address)

async function sendMetrics(res: http.ServerResponse) {
  const text = await metrics.metrics()
  res.writeHead(200, { 'content-type': metrics.contentType })
  res.end(text)
}

// The monitor's port: metrics, nothing that changes the client.
const exporter =
  config.metrics &&
  http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') return void sendMetrics(res)
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end('{"error":"GET /metrics only"}\n')
  })
exporter?.listen(config.metrics!.port, config.metrics!.address)

function shutdown(signal: string) {
  log(`${signal}: stopping; ${outbox.pending()} readings stay in the outbox`)
  clearTimeout(timer)
  sender.stop()
  outbox.shutdown()
  control.close()
  process.exit(0)
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
