// lab-outbox-fill: puts a long outage's backlog into a stopped client's outbox, as if
// its devices had taken a reading every interval for the given hours while nothing
// could be sent: the same Outbox, the same durable appends (many intervals per append,
// or filling a day would take as long as fsyncs do), each reading timed when it would
// have been taken. The outage test uses it to have a day offline in seconds; the
// readings then drain through the real path and must all be stored once.
//   node lab-outbox-fill.cjs --dir DIR --devices-file FILE --interval-ms MS
//        (--hours H | --readings N) [--max-mb MB]
import fs from 'node:fs'
import { parseArgs } from '../lib/args.js'
import { takeReading } from './device.js'
import { Outbox, OutboxFullError } from './outbox.js'

const USAGE = '--dir DIR --devices-file FILE --interval-ms MS (--hours H | --readings N) [--max-mb MB]'
const a = parseArgs(process.argv.slice(2), USAGE)
if (!a.dir || !a['devices-file'] || !a['interval-ms'] || !(a.hours || a.readings)) throw new Error(`usage: ${USAGE}`)
const devices = Object.keys(JSON.parse(fs.readFileSync(a['devices-file'], 'utf8')) as Record<string, string>).sort()
const interval = Number(a['interval-ms'])
const intervals = a.hours
  ? Math.round((Number(a.hours) * 3_600_000) / interval)
  : Math.ceil(Number(a.readings) / devices.length)
const outbox = new Outbox(a.dir, { maxBytes: a['max-mb'] ? Number(a['max-mb']) * 1024 * 1024 : 0 })
const t0 = process.hrtime.bigint()
const before = outbox.open()
const start = Date.now() - intervals * interval
// Intervals per durable append; halved when the cap is near, so that a fill to the
// cap leaves less than one interval's room.
let chunk = 1000
let written = 0
let full = false
for (let k = 0; k < intervals && !full;) {
  const readings = []
  const n = Math.min(intervals - k, chunk)
  for (let j = 0; j < n; j++) {
    const time = new Date(start + (k + j) * interval)
    for (const d of devices) readings.push(takeReading(d, outbox.last(d) + 1 + j, time))
  }
  try {
    outbox.append(readings)
    written += readings.length
    k += n
  } catch (e) {
    if (!(e instanceof OutboxFullError)) throw e
    if (chunk === 1) full = true
    chunk = Math.max(1, Math.floor(chunk / 2))
  }
}
outbox.shutdown()
process.stdout.write(
  JSON.stringify({
    devices: devices.length,
    readings: written,
    pending_before: before,
    pending: outbox.pending(),
    full,
    files: outbox.files(),
    bytes: outbox.bytes(),
    seconds: Number(process.hrtime.bigint() - t0) / 1e9,
  }) + '\n',
)
