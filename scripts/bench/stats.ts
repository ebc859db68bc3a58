// Median and spread of a figure over several runs: what every number in the report is.
export interface Figure {
  median: number
  min: number
  max: number
  runs: number[]
}

export function figure(values: number[]): Figure {
  const v = values.filter((x) => Number.isFinite(x))
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, runs: values }
  const s = [...v].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
  return { median, min: s[0], max: s[s.length - 1], runs: values }
}

/** "1234 (1200 to 1300)", rounded to a sensible precision. */
export function show(f: Figure, digits = 0): string {
  const r = (x: number) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a')
  return f.runs.length > 1 ? `${r(f.median)} (${r(f.min)} to ${r(f.max)})` : r(f.median)
}
