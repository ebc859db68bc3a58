// lab-outbox-bench: what durability costs the IoT client. Appends readings to a real
// Outbox (one write and one fsync of its log segment per append, as the client does) in batches
// of several sizes, acknowledging each batch at once, for a fixed time each; prints
// durable readings per second and appends per second for each batch size as JSON.
//   node lab-outbox-bench.cjs --dir DIR --seconds S --batches 1,16,256
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from '../lib/args.js'
import { takeReading } from './device.js'
import { Outbox } from './outbox.js'

const USAGE = '--dir DIR [--seconds S] [--batches 1,16,256]'
const a = parseArgs(process.argv.slice(2), USAGE)
const dir = a.dir
if (!dir) throw new Error(`usage: ${USAGE}`)
const seconds = Number(a.seconds ?? 2)
const results: { batch: number; readings_per_s: number; appends_per_s: number; ms_per_append: number }[] = []
for (const batch of String(a.batches ?? '1,16,256')
  .split(',')
  .map(Number)) {
  const run = path.join(dir, `batch-${batch}`)
  fs.rmSync(run, { recursive: true, force: true })
  const box = new Outbox(run)
  box.open()
  const devices = Array.from({ length: batch }, (_, i) => `dev-${i}`)
  let appends = 0
  const t0 = process.hrtime.bigint()
  const end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    for (const e of box.append(devices.map((d) => takeReading(d, box.last(d) + 1)))) box.ack(e)
    appends++
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  results.push({
    batch,
    readings_per_s: Math.round((appends * batch) / s),
    appends_per_s: Math.round(appends / s),
    ms_per_append: Math.round(((s * 1000) / appends) * 100) / 100,
  })
  fs.rmSync(run, { recursive: true, force: true })
}
process.stdout.write(JSON.stringify(results) + '\n')
