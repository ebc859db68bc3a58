// A small Prometheus registry: counters (with labels) and one latency histogram, in
// the text exposition format. Enough for the lab's services; no dependency.

type Labels = Record<string, string>
const labelText = (l: Labels) => {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`)
  return parts.length ? `{${parts.join(',')}}` : ''
}

export class Counter {
  private values = new Map<string, { labels: Labels; value: number }>()
  constructor(readonly name: string, readonly help: string, initial: Labels[] = [{}]) {
    for (const l of initial) this.inc(l, 0)
  }
  inc(labels: Labels = {}, by = 1) {
    const key = labelText(labels)
    const v = this.values.get(key) ?? { labels, value: 0 }
    v.value += by
    this.values.set(key, v)
  }
  get(labels: Labels = {}) { return this.values.get(labelText(labels))?.value ?? 0 }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`]
    for (const v of this.values.values()) lines.push(`${this.name}${labelText(v.labels)} ${v.value}`)
    return lines.join('\n')
  }
}

/** A value read when scraped; type counter for one that only grows (kept elsewhere). */
export class Gauge {
  constructor(readonly name: string, readonly help: string, readonly read: () => number, readonly type: 'gauge' | 'counter' = 'gauge') {}
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`, `${this.name} ${this.read()}`].join('\n')
  }
}

export class Histogram {
  private counts: number[]
  private sum = 0
  private count = 0
  constructor(readonly name: string, readonly help: string, readonly buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]) {
    this.counts = buckets.map(() => 0)
  }
  observe(seconds: number) {
    this.sum += seconds
    this.count++
    for (let i = 0; i < this.buckets.length; i++) if (seconds <= this.buckets[i]) this.counts[i]++
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`]
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`))
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`)
    return lines.join('\n')
  }
}

export class Registry {
  private metrics: { render(): string }[] = []
  add<M extends { render(): string }>(m: M): M { this.metrics.push(m); return m }
  render(): string { return this.metrics.map((m) => m.render()).join('\n') + '\n' }
}
