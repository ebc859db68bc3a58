// An open-loop schedule for the load generator (issue 20, "many devices"): arrivals at
// a fixed offered rate, each started at its time whether or not the earlier ones were
// answered, as a fleet of devices does (a device's clock, not the server, says when its
// next reading is due). A closed loop (a fixed number of connections, each sending when
// answered) slows down with the server and hides where it saturates. Latency is taken
// from each arrival's scheduled time, not from when it could be sent, so a queue in
// the generator itself counts (no coordinated omission). What is in flight is bounded:
// an arrival beyond the bound is shed (counted, not sent), so the generator's memory
// stays bounded and the shedding shows the server no longer keeps up.

export interface OpenLoopOptions {
  /** Arrivals per second (a batch is one arrival). */
  rate: number
  /** How long arrivals are scheduled, ms. */
  durationMs: number
  /** Requests in flight at most; an arrival beyond is shed. */
  maxInFlight: number
  /** Sends arrival number `index`; `scheduledAt` is its time on `now`'s clock. Never rejects. */
  fire: (scheduledAt: number, index: number) => Promise<void>
  /** Told of arrival number `index` shed (not sent: the in-flight bound was reached). */
  onShed?: (index: number) => void
  /** The clock, ms (performance.now by default). */
  now?: () => number
}

export interface OpenLoopResult {
  /** Arrivals scheduled. */
  scheduled: number
  /** Arrivals sent. */
  sent: number
  /** Arrivals not sent: the in-flight bound was reached. */
  shed: number
  /** The most requests in flight at once. */
  peakInFlight: number
  /** How late the schedule ran at worst (the generator's own lag), ms. */
  maxLagMs: number
}

/** Runs the schedule, then waits for every sent arrival to be answered. */
export async function openLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  if (!(o.rate > 0) || !Number.isFinite(o.rate)) throw new Error(`--rate must be a positive number; got ${o.rate}`)
  if (!Number.isInteger(o.maxInFlight) || o.maxInFlight < 1)
    throw new Error(`the in-flight bound must be a whole number of at least 1; got ${o.maxInFlight}`)
  const now = o.now ?? (() => performance.now())
  const start = now()
  const total = Math.floor((o.durationMs / 1000) * o.rate)
  const r: OpenLoopResult = { scheduled: 0, sent: 0, shed: 0, peakInFlight: 0, maxLagMs: 0 }
  const inFlight = new Set<Promise<void>>()
  while (r.scheduled < total) {
    const t = now()
    // Every arrival due by now, each with its own scheduled time.
    const due = Math.min(total, Math.floor(((t - start) / 1000) * o.rate) + 1)
    for (; r.scheduled < due; r.scheduled++) {
      const at = start + (r.scheduled / o.rate) * 1000
      r.maxLagMs = Math.max(r.maxLagMs, t - at)
      if (inFlight.size >= o.maxInFlight) {
        r.shed++
        o.onShed?.(r.scheduled)
        continue
      }
      const p = o.fire(at, r.scheduled).finally(() => inFlight.delete(p))
      inFlight.add(p)
      r.sent++
      r.peakInFlight = Math.max(r.peakInFlight, inFlight.size)
    }
    if (r.scheduled >= total) break
    // Sleep until the next arrival is due (timers have a millisecond's resolution).
    const next = start + (r.scheduled / o.rate) * 1000
    await new Promise((res) => setTimeout(res, Math.max(0, Math.floor(next - now()))))
  }
  while (inFlight.size) await Promise.all([...inFlight])
  return r
}
