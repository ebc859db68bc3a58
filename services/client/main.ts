// lab-client: the IoT client on an iot-client host (systemd unit lab-client.service).
// Simulates the topology's devices: every interval each device takes a reading, the
// reading goes to the durable outbox, and the sender delivers it to the server (by
// default the old server address, which the site gateway forwards through the tunnel).
// A control port on localhost reports progress and pauses or resumes the readings:
//   GET /status   {generated, sent, pending, rejected, devices: {id: last seq}, ...}
//   POST /pause   stop taking readings (sending goes on, so the outbox drains)
//   POST /resume
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { log } from '../lib/log.js'
import { takeReading, type Device } from './device.js'
import { Outbox } from './outbox.js'
import { Sender } from './sender.js'

interface Config {
  url: string
  intervalMs: number
  concurrency: number
  stateDir: string
  control: { address: string; port: number }
  devicesFile: string
}

const config = JSON.parse(fs.readFileSync(process.argv[2] ?? '/etc/lab-client/config.json', 'utf8')) as Config
const devices: Device[] = Object.entries(JSON.parse(fs.readFileSync(config.devicesFile, 'utf8')) as Record<string, string>)
  .map(([id, hex]) => ({ id, key: Buffer.from(hex, 'hex') }))
const keys = new Map(devices.map((d) => [d.id, d.key]))

const outbox = new Outbox(path.join(config.stateDir, 'outbox'))
const recovered = outbox.open()
let paused = false
const upstreams: Record<string, number> = {}

const sender = new Sender({
  url: config.url,
  concurrency: config.concurrency,
  keyOf: (d) => {
    const k = keys.get(d)
    if (!k) throw new Error(`no key for ${d} any more`)
    return k
  },
  onAck: (e, _status, upstream) => {
    outbox.ack(e)
    if (upstream) for (const u of upstream.split(/[,:]\s*/).filter((x) => /^\d+\.\d+\.\d+\.\d+$/.test(x)).slice(-1)) upstreams[u] = (upstreams[u] ?? 0) + 1
  },
  onReject: (e, status, reason) => {
    log(`${e.device} seq ${e.seq} refused for good (HTTP ${status}): ${reason}; kept in rejected.jsonl`)
    outbox.reject(e, status, reason)
  },
  onRetry: (() => {
    let last = 0
    return (_e, why) => {
      if (Date.now() - last > 5000) { last = Date.now(); log(`delivery failing, retrying with backoff: ${why} (${outbox.pending()} pending)`) }
    }
  })(),
})
sender.push(recovered)
log(`${devices.length} devices, every ${config.intervalMs} ms, to ${config.url}; ${recovered.length} readings recovered from the outbox`)
void sender.start()

let timer: NodeJS.Timeout | undefined
function tick() {
  const started = Date.now()
  if (!paused) {
    try {
      const now = new Date()
      sender.push(outbox.append(devices.map((d) => takeReading(d.id, outbox.last(d.id) + 1, now))))
    } catch (e) {
      log(`readings not taken this interval: ${(e as Error).message}`)
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
})

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
  if (req.method === 'POST' && (req.url === '/pause' || req.url === '/resume')) {
    paused = req.url === '/pause'
    log(paused ? 'paused: no new readings' : 'resumed')
    return reply(200, status())
  }
  reply(404, { error: 'GET /status, POST /pause, POST /resume' })
})
control.listen(config.control.port, config.control.address)

function shutdown(signal: string) {
  log(`${signal}: stopping; ${outbox.pending()} readings stay in the outbox`)
  clearTimeout(timer)
  sender.stop()
  control.close()
  process.exit(0)
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
