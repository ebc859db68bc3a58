// lab-loadgen: the benchmark's load generator (not a service: the bench uploads it to
// a host for the run and removes it after). Simulates many devices, each sending
// signed readings with its own increasing sequence numbers, from a fixed number of
// concurrent connections (closed loop: each connection sends its next reading when
// the previous one is answered), for a fixed time. A reading that fails is retried
// until acknowledged (never dropped), so the stored count can be checked against
// the acknowledged one. With --batch N, each request carries N readings of several
// devices (application/x-ndjson, as a client drains its backlog), each line answered
// on its own; latency is then per request. With --rate R the load is an open loop
// instead (open-loop.ts): R readings per second offered on a clock, each request sent
// once at its time whatever the server's pace, --concurrency bounding what is in flight
// (an arrival beyond is shed), latency from each arrival's scheduled time; a reading
// not acknowledged is counted, not sent again. Prints one JSON object with the figures.
//
//   node lab-loadgen.cjs --url URL --keys FILE --devices N --concurrency C
//        --duration SECONDS [--warmup SECONDS] [--seq-base B] [--batch N] [--rate R]
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { parseArgs } from '../lib/args.js'
import { encodeReading } from '../lib/reading.js'
import { percentile } from '../lib/stats.js'
import { openLoop } from './open-loop.js'
import { PERMANENT, post, postBatch } from './sender.js'

export interface LoadResult {
  url: string
  devices: number
  concurrency: number
  batch: number
  duration_s: number
  warmup_s: number
  seq_base: number
  generated: number
  acked: number
  stored_new: number
  duplicates: number
  unacked: number
  retries: number
  errors: Record<string, number>
  readings_per_s: number
  latency_ms: { p50: number; p90: number; p99: number; max: number; mean: number }
  upstreams: Record<string, number>
  /** CPU the load generator itself used (user + system), seconds. */
  cpu_s: number
  /** closed: a fixed number of connections, each sending when answered; open: --rate. */
  mode: 'closed' | 'open'
  /** Open loop: the readings per second offered, and what became of them in the measured time. */
  open?: {
    offered_per_s: number
    offered: number
    shed: number
    failed: number
    peak_in_flight: number
    max_lag_ms: number
  }
}

async function main() {
  const a = parseArgs(
    process.argv.slice(2),
    '--url URL --keys FILE --devices N --concurrency C --duration S [--warmup S] [--seq-base B] [--batch N] [--rate R] [--ca F --cert F --key F (https)]',
  )
  const keysAll = JSON.parse(fs.readFileSync(a.keys, 'utf8')) as Record<string, string>
  const n = Number(a.devices ?? 100)
  const ids = Object.keys(keysAll).sort().slice(0, n)
  if (ids.length < n) throw new Error(`${a.keys} has keys for ${ids.length} devices, not ${n}`)
  const keys = new Map(ids.map((id) => [id, Buffer.from(keysAll[id], 'hex')]))
  const concurrency = Number(a.concurrency ?? 16)
  const duration = Number(a.duration ?? 10) * 1000
  const warmup = Number(a.warmup ?? 1) * 1000
  const seqBase = Number(a['seq-base'] ?? Date.now() * 1000)
  const batch = Number(a.batch ?? 1)
  if (!Number.isInteger(batch) || batch < 1 || batch > 1000)
    throw new Error(`--batch must be a whole number from 1 to 1000, got ${a.batch}`)
  const rate = a.rate === undefined ? undefined : Number(a.rate)
  if (rate !== undefined && !(rate > 0 && rate <= 1_000_000))
    throw new Error(`--rate must be readings per second, from more than 0 to 1000000; got ${a.rate}`)
  const url = new URL(a.url)
  // An https URL: a backend's readings port, as the proxy reaches it (its certificate).
  const agent =
    url.protocol === 'https:'
      ? new https.Agent({
          keepAlive: true,
          maxSockets: concurrency,
          ca: fs.readFileSync(a.ca),
          cert: fs.readFileSync(a.cert),
          key: fs.readFileSync(a.key),
          minVersion: 'TLSv1.3',
        })
      : new http.Agent({ keepAlive: true, maxSockets: concurrency })

  const next = new Map(ids.map((id) => [id, seqBase]))
  let turn = 0
  const r: LoadResult = {
    url: a.url,
    devices: n,
    concurrency,
    batch,
    duration_s: duration / 1000,
    warmup_s: warmup / 1000,
    seq_base: seqBase,
    generated: 0,
    acked: 0,
    stored_new: 0,
    duplicates: 0,
    unacked: 0,
    retries: 0,
    errors: {},
    readings_per_s: 0,
    latency_ms: { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 },
    upstreams: {},
    cpu_s: 0,
    mode: rate === undefined ? 'closed' : 'open',
  }
  const latencies: number[] = []
  let measured = 0
  const start = Date.now()
  const measureFrom = start + warmup
  const stopAt = measureFrom + duration
  const giveUpAt = stopAt + 15_000

  const reading = () => {
    const device = ids[turn++ % ids.length]
    const seq = next.get(device)! + 1
    next.set(device, seq)
    r.generated++
    return {
      device,
      body: encodeReading({
        device,
        seq,
        time: new Date().toISOString(),
        value: Math.round(Math.random() * 10000) / 100,
      }),
    }
  }
  const error = (what: string) => {
    r.errors[what.slice(0, 60)] = (r.errors[what.slice(0, 60)] ?? 0) + 1
  }
  const acked = (status: number, t0: bigint, now: number, count: number) => {
    r.acked += count
    if (status === 201) r.stored_new += count
    else r.duplicates += count
    if (now >= measureFrom && now < stopAt) {
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6)
      measured += count
    }
  }

  /** One reading per request, retried until acknowledged. */
  async function single() {
    const e = reading()
    for (;;) {
      const t0 = process.hrtime.bigint()
      const now = Date.now()
      let status = 0
      try {
        const ans = await post(url, agent, e, keys.get(e.device)!, 5000)
        status = ans.status
        if (ans.upstream) r.upstreams[ans.upstream] = (r.upstreams[ans.upstream] ?? 0) + 1
      } catch (err) {
        error((err as Error).message)
      }
      if (status === 200 || status === 201) {
        acked(status, t0, now, 1)
        return
      }
      if (status) error(`HTTP ${status}`)
      if (Date.now() > giveUpAt || [400, 401, 409, 413, 415].includes(status)) {
        r.unacked++
        return
      }
      r.retries++
      await new Promise((res) => setTimeout(res, 50))
    }
  }

  /** A batch; the lines not acknowledged are sent again (as a smaller batch). */
  async function batched() {
    let pending = Array.from({ length: batch }, reading)
    while (pending.length) {
      const t0 = process.hrtime.bigint()
      const now = Date.now()
      let failed = pending
      try {
        const { answer, results } = await postBatch(url, agent, pending, (d) => keys.get(d)!, 10_000)
        if (answer.upstream) r.upstreams[answer.upstream] = (r.upstreams[answer.upstream] ?? 0) + pending.length
        if (!results) error(`HTTP ${answer.status}`)
        else {
          // Refused for good: counted as unacknowledged, not sent again.
          r.unacked += results.filter((x) => PERMANENT.has(x.code)).length
          failed = pending.filter(
            (_, i) => results[i].code !== 200 && results[i].code !== 201 && !PERMANENT.has(results[i].code),
          )
          const stored = results.filter((x) => x.code === 201).length
          const dup = results.filter((x) => x.code === 200).length
          if (stored) acked(201, t0, now, stored)
          if (dup) {
            acked(200, t0, now, dup)
            if (stored) latencies.pop()
          }
          for (const x of results) if (x.code !== 200 && x.code !== 201) error(`HTTP ${x.code} in a batch`)
        }
      } catch (err) {
        error((err as Error).message)
      }
      if (failed.length && Date.now() > giveUpAt) {
        r.unacked += failed.length
        return
      }
      if (failed.length) {
        r.retries += failed.length
        await new Promise((res) => setTimeout(res, 50))
      }
      pending = failed
    }
  }

  async function worker() {
    while (Date.now() < stopAt) await (batch > 1 ? batched() : single())
  }

  /**
   * Open loop: one request per arrival (a reading, or a batch), sent once. Accepted:
   * the readings acknowledged within the measured time, whenever offered (the server's
   * pace). Of the arrivals scheduled in that time: the latency of each acknowledged one
   * from its scheduled time, and how many failed or were shed.
   */
  async function openLoad(perSecond: number) {
    const arrivals = perSecond / batch
    const firstMeasured = Math.ceil((warmup / 1000) * arrivals)
    let failed = 0
    let shed = 0
    const sched = await openLoop({
      rate: arrivals,
      durationMs: warmup + duration,
      maxInFlight: concurrency,
      onShed: (index) => {
        if (index >= firstMeasured) shed += batch
      },
      fire: async (at, index) => {
        const inWindow = index >= firstMeasured
        const lines = Array.from({ length: batch }, reading)
        let ok = 0
        let stored = 0
        try {
          if (batch === 1) {
            const ans = await post(url, agent, lines[0], keys.get(lines[0].device)!, 5000)
            if (ans.upstream) r.upstreams[ans.upstream] = (r.upstreams[ans.upstream] ?? 0) + 1
            if (ans.status === 200 || ans.status === 201) ok = 1
            else error(`HTTP ${ans.status}`)
            if (ans.status === 201) stored = 1
          } else {
            const { answer, results } = await postBatch(url, agent, lines, (d) => keys.get(d)!, 10_000)
            if (answer.upstream) r.upstreams[answer.upstream] = (r.upstreams[answer.upstream] ?? 0) + batch
            if (!results) error(`HTTP ${answer.status}`)
            for (const x of results ?? []) if (x.code !== 200 && x.code !== 201) error(`HTTP ${x.code} in a batch`)
            ok = results?.filter((x) => x.code === 200 || x.code === 201).length ?? 0
            stored = results?.filter((x) => x.code === 201).length ?? 0
          }
        } catch (err) {
          error((err as Error).message)
        }
        r.acked += ok
        r.stored_new += stored
        r.duplicates += ok - stored
        r.unacked += batch - ok
        const done = performance.now()
        // The schedule's start, from this arrival's place in it: the measured time's clock.
        const since = done - (at - (index / arrivals) * 1000)
        if (since >= warmup && since < warmup + duration) measured += ok
        if (!inWindow) return
        if (ok) latencies.push(done - at)
        failed += batch - ok
      },
    })
    const inWindow = sched.scheduled - firstMeasured
    r.open = {
      offered_per_s: perSecond,
      offered: inWindow * batch,
      shed,
      failed,
      peak_in_flight: sched.peakInFlight,
      max_lag_ms: Math.round(sched.maxLagMs * 10) / 10,
    }
  }

  if (rate === undefined) await Promise.all(Array.from({ length: concurrency }, worker))
  else await openLoad(rate)
  agent.destroy()
  latencies.sort((x, y) => x - y)
  const round = (x: number) => Math.round(x * 100) / 100
  r.readings_per_s = round(measured / (duration / 1000))
  r.latency_ms = {
    p50: round(percentile(latencies, 50)),
    p90: round(percentile(latencies, 90)),
    p99: round(percentile(latencies, 99)),
    max: round(latencies[latencies.length - 1] ?? NaN),
    mean: round(latencies.reduce((s, x) => s + x, 0) / (latencies.length || 1)),
  }
  const cpu = process.cpuUsage()
  r.cpu_s = round((cpu.user + cpu.system) / 1e6)
  process.stdout.write(JSON.stringify(r) + '\n')
}

main().catch((e) => {
  process.stderr.write(`lab-loadgen: ${(e as Error).message}\n`)
  process.exit(2)
})
