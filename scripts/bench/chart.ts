// A small SVG chart maker for the report: panels of grouped bars, each bar the
// median with a whisker from the lowest to the highest run. No dependency.
import type { Figure } from './stats.js'

export interface Group {
  label: string
  bars: Figure[]
}
export interface Panel {
  title: string
  unit: string
  series: string[]
  groups: Group[]
}

const COLORS = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5']
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function niceMax(v: number) {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((x) => x >= v)!
}

function panel(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const left = 56,
    bottom = 46,
    top = 30
  const plotW = w - left - 10,
    plotH = h - top - bottom
  const max = niceMax(Math.max(...p.groups.flatMap((g) => g.bars.map((b) => (Number.isFinite(b.max) ? b.max : 0)))))
  const y = (v: number) => y0 + top + plotH - (v / max) * plotH
  const out: string[] = [
    `<text x="${x0 + w / 2}" y="${y0 + 16}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`,
  ]
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4
    out.push(
      `<line x1="${x0 + left}" x2="${x0 + left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#e2e8f0"/>`,
      `<text x="${x0 + left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v >= 1000 ? `${v / 1000}k` : +v.toFixed(2)}</text>`,
    )
  }
  out.push(
    `<text transform="translate(${x0 + 14} ${y0 + top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(p.unit)}</text>`,
  )
  const gw = plotW / p.groups.length
  const bw = Math.min(36, (gw * 0.75) / p.series.length)
  p.groups.forEach((g, gi) => {
    const gx = x0 + left + gi * gw + (gw - bw * g.bars.length) / 2
    g.bars.forEach((b, bi) => {
      if (!Number.isFinite(b.median)) return
      const bx = gx + bi * bw
      out.push(
        `<rect x="${bx + 1}" y="${y(b.median)}" width="${bw - 2}" height="${y(0) - y(b.median)}" fill="${COLORS[bi % COLORS.length]}"><title>${esc(`${g.label} ${p.series[bi]}: ${b.median} (${b.min} to ${b.max})`)}</title></rect>`,
      )
      if (b.max > b.min) {
        const cx = bx + bw / 2
        out.push(
          `<line x1="${cx}" x2="${cx}" y1="${y(b.min)}" y2="${y(b.max)}" stroke="#1a202c"/>`,
          `<line x1="${cx - 4}" x2="${cx + 4}" y1="${y(b.max)}" y2="${y(b.max)}" stroke="#1a202c"/>`,
          `<line x1="${cx - 4}" x2="${cx + 4}" y1="${y(b.min)}" y2="${y(b.min)}" stroke="#1a202c"/>`,
        )
      }
    })
    out.push(
      `<text x="${x0 + left + gi * gw + gw / 2}" y="${y0 + top + plotH + 16}" text-anchor="middle" font-size="11">${esc(g.label)}</text>`,
    )
  })
  if (p.series.length > 1) {
    p.series.forEach((s, i) =>
      out.push(
        `<rect x="${x0 + left + i * 70}" y="${y0 + h - 14}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/>`,
        `<text x="${x0 + left + i * 70 + 14}" y="${y0 + h - 5}" font-size="11">${esc(s)}</text>`,
      ),
    )
  }
  out.push(`<line x1="${x0 + left}" x2="${x0 + left + plotW}" y1="${y(0)}" y2="${y(0)}" stroke="#1a202c"/>`)
  return out.join('\n')
}

/** Panels side by side, one SVG. */
export function chart(panels: Panel[], caption: string): string {
  const w = 340,
    h = 300
  const width = w * panels.length,
    height = h + 24
  return (
    [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
      `<rect width="100%" height="100%" fill="white"/>`,
      ...panels.map((p, i) => panel(p, i * w, 0, w, h)),
      `<text x="8" y="${height - 6}" font-size="10" fill="#4a5568">${esc(caption)}</text>`,
      '</svg>',
    ].join('\n') + '\n'
  )
}
