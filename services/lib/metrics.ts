// Metrics with prom-client (the Prometheus client most Node.js services use): each
// service has its own registry with the process's default metrics (CPU, memory, event
// loop lag, heap), its own counters and histograms, and values kept elsewhere (the
// outbox, the batcher) read at scrape time through these two helpers.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'

export { Counter, Gauge, Histogram, Registry } from 'prom-client'

/** A registry with the process metrics every service exports. */
export function serviceRegistry(): Registry {
  const r = new Registry()
  collectDefaultMetrics({ register: r })
  return r
}

/** A gauge read when scraped. */
export function gaugeOf(r: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [r],
    collect() {
      this.set(read())
    },
  })
}

/** A counter kept elsewhere (it only grows, or restarts with the process), read when scraped. */
export function counterOf(r: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [r],
    collect() {
      this.reset()
      this.inc(read())
    },
  })
}
