// npm run bench:compare -- BEFORE/report.json AFTER/report.json
// Two benchmark reports side by side (medians, and the change), as a Markdown table:
// how a tuning is judged, from the same harness on the same machine.
import fs from 'node:fs'
import type { BenchReport } from './bench/report.js'
import type { Figure } from './bench/stats.js'

const [a, b] = process.argv.slice(2)
if (!a || !b) {
  console.error('usage: npm run bench:compare -- BEFORE/report.json AFTER/report.json')
  process.exit(2)
}
const load = (f: string): BenchReport => {
  try {
    return JSON.parse(fs.readFileSync(f, 'utf8')) as BenchReport
  } catch (e) {
    console.error(`bench:compare: cannot read ${f}: ${(e as Error).message}`)
    process.exit(2)
  }
}
const [x, y] = [load(a), load(b)]
const rows: [string, Figure | undefined, Figure | undefined, number][] = []
for (const s of x.ingest.scenarios) {
  const t = y.ingest.scenarios.find((z) => z.id === s.id)
  rows.push(
    [`${s.id}: readings/s`, s.readings_per_s, t?.readings_per_s, 0],
    [`${s.id}: p50 ms`, s.p50_ms, t?.p50_ms, 1],
    [`${s.id}: p99 ms`, s.p99_ms, t?.p99_ms, 1],
  )
}
for (const s of x.ingest.scaling.slice(0, -1)) {
  const t = y.ingest.scaling.find((z) => z.id === s.id)
  rows.push([`${s.backends} backend(s): readings/s`, s.readings_per_s, t?.readings_per_s, 0])
}
if (x.tunnel && y.tunnel) rows.push(['tunnel Mbit/s', x.tunnel.through_tunnel_mbit, y.tunnel.through_tunnel_mbit, 0])
rows.push(['re-provision s', x.bringup.reprovision_s, y.bringup.reprovision_s, 1])
const f = (v: Figure | undefined, d: number) =>
  v && Number.isFinite(v.median) ? `${v.median.toFixed(d)} (${v.min.toFixed(d)} to ${v.max.toFixed(d)})` : 'n/a'
console.log(`| figure | ${x.label} | ${y.label} | change |`)
console.log('| --- | --- | --- | --- |')
for (const [name, p, q, d] of rows) {
  const change =
    p && q && p.median
      ? `${q.median >= p.median ? '+' : ''}${(((q.median - p.median) / p.median) * 100).toFixed(0)} %`
      : 'n/a'
  console.log(`| ${name} | ${f(p, d)} | ${f(q, d)} | ${change} |`)
}
const lost = (r: BenchReport) => (r.zero_loss ? 'none' : 'SOME')
console.log(`| readings lost or duplicated | ${lost(x)} | ${lost(y)} | |`)
