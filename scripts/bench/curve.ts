// Curves for the scaling measurements (issue 20): a measured quantity against what was
// varied (backends, sites, offered readings per second), with a least-squares line and
// the knee where the curve stops following it. Drawn as SVG with the points, the fitted
// line and the knee marked, and given as a table; no dependency.

export interface Point {
  x: number
  y: number
}

/** y = slope * x + intercept, by least squares; r2 says how well the line explains the points. */
export interface LineFit {
  slope: number
  intercept: number
  r2: number
  n: number
}

export function fitLine(points: Point[]): LineFit {
  const ps = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
  const n = ps.length
  if (n < 2) throw new Error(`a line needs at least two measured points, got ${n}`)
  const mx = ps.reduce((s, p) => s + p.x, 0) / n
  const my = ps.reduce((s, p) => s + p.y, 0) / n
  const sxx = ps.reduce((s, p) => s + (p.x - mx) ** 2, 0)
  if (sxx === 0) throw new Error('a line needs at least two different x values')
  const sxy = ps.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0)
  const slope = sxy / sxx
  const intercept = my - slope * mx
  const ssTot = ps.reduce((s, p) => s + (p.y - my) ** 2, 0)
  const ssRes = ps.reduce((s, p) => s + (p.y - (slope * p.x + intercept)) ** 2, 0)
  return { slope, intercept, r2: ssTot === 0 ? 1 : 1 - ssRes / ssTot, n }
}

/**
 * Where a throughput curve stops keeping up: the last offered load (x) at which the
 * accepted rate (y) is still at least `share` of it; undefined if even the first is
 * not. For an open-loop load, past the knee the offered rate grows and the accepted
 * one does not.
 */
export function saturationKnee(points: Point[], share = 0.95): Point | undefined {
  const sorted = [...points].sort((a, b) => a.x - b.x)
  let knee: Point | undefined
  for (const p of sorted) {
    if (p.y >= share * p.x) knee = p
    else break
  }
  return knee
}

/**
 * The knee of a curve that bends (latency against load, say), by Kneedle (Satopää et
 * al., 2011): both axes scaled to 0..1, the point farthest from the straight line
 * between the first and the last point. Undefined for fewer than three points or a
 * curve that does not bend (every point within `minBend` of that line, in scaled units).
 */
export function kneedle(points: Point[], minBend = 0.05): Point | undefined {
  const ps = [...points].filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x)
  if (ps.length < 3) return undefined
  const [x0, x1] = [ps[0].x, ps.at(-1)!.x]
  const ys = ps.map((p) => p.y)
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)]
  if (x1 === x0 || y1 === y0) return undefined
  const sx = (x: number) => (x - x0) / (x1 - x0)
  const sy = (y: number) => (y - y0) / (y1 - y0)
  // The chord from the first to the last point, in scaled units.
  const [ax, ay, bx, by] = [0, sy(ps[0].y), 1, sy(ps.at(-1)!.y)]
  const len = Math.hypot(bx - ax, by - ay)
  let best: { p: Point; d: number } | undefined
  for (const p of ps.slice(1, -1)) {
    const d = Math.abs((by - ay) * sx(p.x) - (bx - ax) * sy(p.y) + bx * ay - by * ax) / len
    if (!best || d > best.d) best = { p, d }
  }
  return best && best.d >= minBend ? best.p : undefined
}

export interface Series {
  name: string
  points: Point[]
}

export interface Curve {
  title: string
  x: string
  y: string
  series: Series[]
  /** Draw each series' least-squares line (dashed). */
  fit?: boolean
  /** Points to mark, each with a label (a knee and what saturates there). */
  marks?: { at: Point; label: string }[]
  /** A dotted reference line y = x (accepted against offered). */
  identity?: boolean
  /**
   * Both axes logarithmic (base 2), for a load doubled at each point: the points equally
   * spaced, y = x a diagonal, and a plateau flat however far the offer goes.
   */
  log?: boolean
}

const COLORS = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5']
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const num = (v: number) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(2)}`)

function niceMax(v: number) {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((x) => x >= v)!
}

const measured = (c: Curve) =>
  c.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))

/** Whether the curve has a measured point to draw (a curve that stopped at its first point may have none). */
export const drawable = (c: Curve) => measured(c).length > 0

/** The curve as a standalone SVG document (width w, height h). */
export function curveSvg(c: Curve, w = 560, h = 340): string {
  const all = measured(c)
  if (!all.length) throw new Error(`${c.title}: no measured point to draw`)
  const [left, right, top, bottom] = [64, 16, 34, 48]
  const [pw, ph] = [w - left - right, h - top - bottom]
  const ys = [...all.map((p) => p.y), ...(c.identity ? all.map((p) => p.x) : [])]
  // Linear: 0 to a round maximum. Log: the powers of two around the points.
  const pow2 = (v: number, round: (x: number) => number) => 2 ** round(Math.log2(v))
  const positive = (vs: number[]) => vs.filter((v) => v > 0)
  const [xMin, xMax] = c.log
    ? [
        pow2(Math.min(...positive(all.map((p) => p.x)), Infinity), Math.floor),
        pow2(Math.max(...all.map((p) => p.x)), Math.ceil),
      ]
    : [0, niceMax(Math.max(...all.map((p) => p.x)))]
  const [yMin, yMax] = c.log
    ? [pow2(Math.min(...positive(ys), Infinity), Math.floor), pow2(Math.max(...ys), Math.ceil)]
    : [0, niceMax(Math.max(...ys))]
  if (c.log && !(xMin > 0 && yMin > 0 && Number.isFinite(xMin) && Number.isFinite(yMin)))
    throw new Error(`${c.title}: logarithmic axes need values above 0`)
  const scale = (v: number, lo: number, hi: number) =>
    c.log
      ? hi === lo
        ? 0.5
        : (Math.log2(Math.max(lo, Math.min(v, hi))) - Math.log2(lo)) / (Math.log2(hi) - Math.log2(lo))
      : (Math.max(0, Math.min(v, hi)) - lo) / (hi - lo)
  const X = (x: number) => +(left + scale(x, xMin, xMax) * pw).toFixed(1)
  const Y = (y: number) => +(top + ph - scale(y, yMin, yMax) * ph).toFixed(1)
  // Gridlines: quarters (linear), or powers of two, at most 8 a side (log).
  const ticks = (lo: number, hi: number) => {
    if (!c.log) return [0, 1, 2, 3, 4].map((i) => lo + ((hi - lo) * i) / 4)
    const n = Math.round(Math.log2(hi / lo))
    const step = Math.max(1, Math.ceil(n / 8))
    return Array.from({ length: Math.floor(n / step) + 1 }, (_, i) => lo * 2 ** (i * step))
  }
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(c.title)}</title>`,
    `<text x="${w / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(c.title)}</text>`,
  ]
  for (const vy of ticks(yMin, yMax))
    out.push(
      `<line x1="${left}" x2="${left + pw}" y1="${Y(vy)}" y2="${Y(vy)}" stroke="#e2e8f0"/>`,
      `<text x="${left - 6}" y="${Y(vy) + 4}" text-anchor="end" font-size="11">${num(vy)}</text>`,
    )
  // A count on x (backends, sites) gets whole-number ticks.
  const whole = !c.log && all.every((p) => Number.isInteger(p.x)) && xMax <= 12
  for (const vx of whole ? Array.from({ length: xMax + 1 }, (_, i) => i) : ticks(xMin, xMax))
    out.push(`<text x="${X(vx)}" y="${top + ph + 16}" text-anchor="middle" font-size="11">${num(vx)}</text>`)
  out.push(
    `<line x1="${left}" x2="${left + pw}" y1="${Y(yMin)}" y2="${Y(yMin)}" stroke="#4a5568"/>`,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${Y(yMin)}" stroke="#4a5568"/>`,
    `<text x="${left + pw / 2}" y="${h - 8}" text-anchor="middle">${esc(c.x)}</text>`,
    `<text transform="translate(14 ${top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.y)}</text>`,
  )
  if (c.identity) {
    const [a, b] = [Math.max(xMin, yMin), Math.min(xMax, yMax)]
    out.push(
      `<line class="identity" x1="${X(a)}" y1="${Y(a)}" x2="${X(b)}" y2="${Y(b)}" stroke="#a0aec0" stroke-dasharray="2 3"/>`,
    )
  }
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]
    const ps = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x)
    if (!ps.length) return
    out.push(
      `<polyline class="measured" fill="none" stroke="${color}" stroke-width="2" points="${ps.map((p) => `${X(p.x)},${Y(p.y)}`).join(' ')}"/>`,
    )
    for (const p of ps)
      out.push(
        `<circle cx="${X(p.x)}" cy="${Y(p.y)}" r="3" fill="${color}"><title>${esc(`${s.name}: ${num(p.x)} → ${num(p.y)}`)}</title></circle>`,
      )
    if (c.fit && ps.length >= 2 && ps[0].x !== ps.at(-1)!.x) {
      const f = fitLine(ps)
      const [a, b] = [ps[0].x, ps.at(-1)!.x]
      // A straight line is a curve on log axes: drawn through 32 points.
      const along = c.log ? Array.from({ length: 33 }, (_, i) => a * (b / a) ** (i / 32)) : [a, b]
      out.push(
        `<polyline class="fit" fill="none" points="${along.map((x) => `${X(x)},${Y(f.slope * x + f.intercept)}`).join(' ')}" stroke="${color}" stroke-dasharray="6 4"><title>${esc(`${s.name}: y = ${num(f.slope)} x + ${num(f.intercept)} (r² ${f.r2.toFixed(3)})`)}</title></polyline>`,
      )
    }
    out.push(
      `<text x="${left + 8}" y="${top + 14 + 16 * i}" fill="${color}">${esc(s.name)}${c.fit && ps.length >= 2 && ps[0].x !== ps.at(-1)!.x ? esc(`: slope ${num(fitLine(ps).slope)}`) : ''}</text>`,
    )
  })
  for (const m of c.marks ?? []) {
    // On the side of the mark with more room: a knee near the right edge is labelled to its left.
    const leftOf = X(m.at.x) > w / 2 + left / 2
    out.push(
      `<g class="knee"><line x1="${X(m.at.x)}" x2="${X(m.at.x)}" y1="${top}" y2="${Y(yMin)}" stroke="#c53030" stroke-dasharray="3 3"/>`,
      `<circle cx="${X(m.at.x)}" cy="${Y(m.at.y)}" r="6" fill="none" stroke="#c53030" stroke-width="2"/>`,
      `<text x="${X(m.at.x) + (leftOf ? -6 : 6)}" y="${Math.max(top + 12, Y(m.at.y) - 10)}"${leftOf ? ' text-anchor="end"' : ''} fill="#c53030">${esc(m.label)}</text></g>`,
    )
  }
  out.push('</svg>')
  return out.join('\n')
}

/** The same curve as a Markdown table: one row per x, one column per series. */
export function curveTable(c: Curve): string {
  const xs = [...new Set(c.series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b)
  const cell = (s: Series, x: number) => {
    const p = s.points.find((q) => q.x === x)
    return p && Number.isFinite(p.y) ? num(p.y) : '–'
  }
  const rows = [
    `| ${c.x} | ${c.series.map((s) => `${s.name} (${c.y})`).join(' | ')} |`,
    `|---:|${c.series.map(() => '---:').join('|')}|`,
    ...xs.map((x) => `| ${num(x)} | ${c.series.map((s) => cell(s, x)).join(' | ')} |`),
  ]
  if (c.fit)
    for (const s of c.series.filter((q) => q.points.length >= 2)) {
      try {
        const f = fitLine(s.points)
        rows.push(
          '',
          `${s.name}: y = ${num(f.slope)} x + ${num(f.intercept)} (least squares, r² ${f.r2.toFixed(3)}, ${f.n} points)`,
        )
      } catch (e) {
        rows.push('', `${s.name}: no line (${(e as Error).message})`)
      }
    }
  return rows.join('\n')
}
