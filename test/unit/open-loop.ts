// The load generator's open loop (services/client/open-loop.ts and loadgen --rate): the
// offered rate is kept whatever the server's pace, what is in flight is bounded, and
// latency counts from each arrival's scheduled time. Against a local HTTP server that
// answers one request at a time in 10 ms (100 a second at most).
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { openLoop } from '../../services/client/open-loop.js'
import type { LoadResult } from '../../services/client/loadgen.js'

const exec = promisify(execFile)

t.test('the schedule: every arrival at its time, none beyond the in-flight bound', async (t) => {
  const fired: number[] = []
  const r = await openLoop({
    rate: 1000,
    durationMs: 200,
    maxInFlight: 1000,
    fire: async (_at, i) => {
      fired.push(i)
    },
  })
  t.equal(r.scheduled, 200, '200 ms at 1000 a second: 200 arrivals')
  t.equal(r.sent, 200, 'all sent')
  t.same(
    fired,
    Array.from({ length: 200 }, (_, i) => i),
    'in order, each once',
  )

  // Nothing is answered until the schedule ends: the bound holds, the rest is shed.
  let release!: () => void
  const held = new Promise<void>((res) => (release = res))
  const shed: number[] = []
  const timer = setTimeout(() => release(), 400)
  const b = await openLoop({
    rate: 1000,
    durationMs: 100,
    maxInFlight: 5,
    fire: () => held,
    onShed: (i) => shed.push(i),
  })
  clearTimeout(timer)
  t.equal(b.sent, 5, 'five in flight at most')
  t.equal(b.peakInFlight, 5)
  t.equal(b.shed, 95, 'the other 95 are shed, not queued')
  t.same(shed.slice(0, 2), [5, 6], 'from the sixth on')

  await t.rejects(openLoop({ rate: 0, durationMs: 10, maxInFlight: 1, fire: async () => {} }), /--rate/)
  await t.rejects(openLoop({ rate: 10, durationMs: 10, maxInFlight: 0, fire: async () => {} }), /in-flight bound/)
})

t.test('the schedule does not slow down with the server, and the wait counts in the latency', async (t) => {
  // A server of one request at a time, 20 ms each: 50 a second.
  let busy = Promise.resolve()
  const serve = () => {
    const mine = busy.then(() => new Promise<void>((res) => setTimeout(res, 20)))
    busy = mine
    return mine
  }
  const latencies: number[] = []
  const r = await openLoop({
    rate: 200,
    durationMs: 500,
    maxInFlight: 1000,
    fire: async (at) => {
      await serve()
      latencies.push(performance.now() - at)
    },
  })
  t.equal(r.sent, 100, 'all 100 arrivals of 0.5 s at 200 a second were sent')
  t.ok(
    r.maxLagMs < 250,
    `each when it was due, not when the one before was answered: ${r.maxLagMs.toFixed(0)} ms late at worst (a closed loop would be 1.5 s late by the end)`,
  )
  latencies.sort((a, b) => a - b)
  t.ok(
    latencies.at(-1)! >= 1000,
    `the last waited behind the others: ${latencies.at(-1)!.toFixed(0)} ms from its scheduled time (100 × 20 ms of service, less 0.5 s)`,
  )
})

t.test('loadgen --rate: accepted against offered, below and above what the server takes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-openloop-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const keys = path.join(dir, 'devices.json')
  fs.writeFileSync(keys, JSON.stringify({ 'bench-0001': '00'.repeat(32), 'bench-0002': '11'.repeat(32) }))
  // One request at a time, 10 ms each: 100 readings a second at most.
  let queue = Promise.resolve()
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      queue = queue.then(
        () =>
          new Promise<void>((done) =>
            setTimeout(() => {
              res.writeHead(201, { 'content-type': 'application/json' }).end('{"status":"stored"}')
              done()
            }, 10),
          ),
      )
    })
  })
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res))
  t.teardown(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/readings`
  const tsx = path.resolve('node_modules/.bin/tsx')
  const run = async (rate: number) => {
    const { stdout } = await exec(tsx, [
      'services/client/loadgen.ts',
      ...['--url', url, '--keys', keys, '--devices', '2', '--concurrency', '50'],
      ...['--duration', '2', '--warmup', '0.5', '--rate', String(rate)],
    ])
    return JSON.parse(stdout) as LoadResult
  }
  const [below, above] = [await run(40), await run(400)]
  for (const r of [below, above]) {
    t.equal(r.mode, 'open')
    t.equal(r.open!.offered, r.open!.offered_per_s * 2, `${r.open!.offered_per_s}/s for 2 s: all offered on the clock`)
    t.equal(r.acked + r.unacked, r.generated, 'each reading sent was answered or counted as failed')
  }
  t.equal(below.open!.shed + below.open!.failed, 0, 'below capacity: none shed, none failed')
  t.ok(
    above.open!.shed + above.open!.failed > 0,
    `above it, some shed or timed out (${above.open!.shed} shed, ${above.open!.failed} failed)`,
  )
  t.ok(below.readings_per_s >= 0.95 * 40, `below capacity, all accepted: ${below.readings_per_s}/s of 40/s`)
  t.ok(
    above.readings_per_s <= 120,
    `above it, accepted at the server's pace (100/s), not the offered one: ${above.readings_per_s}/s of 400/s`,
  )
  t.ok(
    above.latency_ms.p99 >= 300,
    `and the wait in the queue counts in the latency: p99 ${above.latency_ms.p99} ms above (50 in flight, 10 ms each), ${below.latency_ms.p99} ms below`,
  )
})
