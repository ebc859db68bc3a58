// The scaling curves' arithmetic and drawing (scripts/bench/curve.ts): the fitted line,
// the two knees, and an SVG and a table that carry what was measured.
import t from 'tap'
import { curveSvg, curveTable, fitLine, kneedle, saturationKnee, type Point } from '../../scripts/bench/curve.js'

const pts = (xs: number[], f: (x: number) => number): Point[] => xs.map((x) => ({ x, y: f(x) }))

t.test('a least-squares line: exact on a line, r² below 1 off it, refused without two x values', async (t) => {
  const f = fitLine(pts([1, 10, 50, 100], (x) => 0.25 * x + 3))
  t.equal(+f.slope.toFixed(9), 0.25)
  t.equal(+f.intercept.toFixed(9), 3)
  t.equal(+f.r2.toFixed(9), 1)
  const noisy = fitLine([
    { x: 1, y: 1 },
    { x: 2, y: 3 },
    { x: 3, y: 2 },
    { x: 4, y: 4 },
  ])
  t.equal(+noisy.slope.toFixed(9), 0.8)
  t.ok(noisy.r2 > 0.5 && noisy.r2 < 1, `r² ${noisy.r2.toFixed(3)}`)
  t.throws(() => fitLine([{ x: 1, y: 1 }]), /at least two measured points, got 1/)
  t.throws(
    () =>
      fitLine([
        { x: 2, y: 1 },
        { x: 2, y: 5 },
      ]),
    /two different x values/,
  )
  t.equal(fitLine([...pts([1, 2], (x) => x), { x: 3, y: NaN }]).n, 2, 'a point not measured (NaN) is left out')
})

t.test('the saturation knee: the last offered rate still accepted (95 %)', async (t) => {
  // Accepted follows offered up to 4000/s, then flattens near 4200.
  const curve = pts([500, 1000, 2000, 4000, 8000, 16000], (x) => Math.min(x, 4200))
  t.same(saturationKnee(curve), { x: 4000, y: 4000 })
  t.same(saturationKnee([...curve].reverse()), { x: 4000, y: 4000 }, 'whatever order the points come in')
  t.equal(saturationKnee(pts([100, 200], (x) => x / 2)), undefined, 'none when even the first falls short')
  t.same(
    saturationKnee(
      pts([100, 200], (x) => x * 0.9),
      0.9,
    ),
    { x: 200, y: 180 },
    'the share is a parameter',
  )
})

t.test('Kneedle: the bend of a latency curve, none on a straight line', async (t) => {
  // p99 flat near 20 ms, then climbing steeply past 6 (a queue forming).
  const latency = pts([1, 2, 3, 4, 5, 6, 7, 8], (x) => (x <= 6 ? 20 + x : 20 + 6 + (x - 6) * 60))
  t.same(kneedle(latency), { x: 6, y: 26 })
  t.equal(kneedle(pts([1, 2, 3, 4, 5], (x) => 3 * x)), undefined, 'a line has no knee')
  t.equal(kneedle(pts([1, 2], (x) => x)), undefined, 'two points have none')
})

t.test('the SVG: every point, the fitted line, the knee and its reason; escaped text', async (t) => {
  const svg = curveSvg({
    title: 'Hub memory per site <lxc>',
    x: 'sites',
    y: 'MiB',
    series: [{ name: 'charon RSS', points: pts([1, 10, 100, 1000], (x) => 0.05 * x + 20) }],
    fit: true,
    marks: [{ at: { x: 100, y: 25 }, label: 'knee: charon at 100 % of a core' }],
  })
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  t.equal((svg.match(/<circle cx=/g) ?? []).length, 5, 'four measured points and the knee')
  t.match(svg, /<polyline class="fit"[^>]*><title>charon RSS: y = 0\.05 x \+ 20 \(r² 1\.000\)<\/title>/)
  t.match(svg, /<g class="knee">[\s\S]*knee: charon at 100 % of a core/)
  t.match(svg, /Hub memory per site &lt;lxc&gt;/)
  t.notMatch(svg, /<lxc>/, 'no raw markup from a title')
  t.match(svg, /charon RSS: slope 0\.05/)
  t.throws(
    () => curveSvg({ title: 'empty', x: 'x', y: 'y', series: [{ name: 'a', points: [] }] }),
    /empty: no measured point/,
  )
  const identity = curveSvg({
    title: 'accepted',
    x: 'offered/s',
    y: 'accepted/s',
    series: [{ name: 'batches', points: pts([1000, 2000], (x) => x) }],
    identity: true,
  })
  t.match(identity, /class="identity"/, 'accepted against offered: the y = x line')

  // Log axes for a doubled load: the points equally spaced, a plateau flat.
  const doubled = curveSvg({
    title: 'open loop',
    x: 'offered/s',
    y: 'accepted/s',
    log: true,
    identity: true,
    series: [{ name: 'one per request', points: pts([100, 200, 400, 800, 1600], (x) => Math.min(x, 500)) }],
  })
  const cx = [...doubled.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])])
  const steps = cx.slice(1).map((c, i) => c[0] - cx[i][0])
  t.ok(
    steps.every((d) => Math.abs(d - steps[0]) < 0.2),
    `doubling x: equal steps on the log axis (${steps.map((d) => d.toFixed(1)).join(', ')})`,
  )
  t.equal(cx[3][1], cx[4][1], 'the plateau (500 at 800 and at 1600) is level')
  t.ok(
    cx[0][1] - cx[1][1] > 0 && Math.abs(cx[0][1] - cx[1][1] - (cx[1][1] - cx[2][1])) < 0.2,
    'y doubling: equal steps up',
  )
  t.throws(
    () => curveSvg({ title: 'zero', x: 'x', y: 'y', log: true, series: [{ name: 'a', points: [{ x: 0, y: 0 }] }] }),
    /zero: logarithmic axes need values above 0/,
  )
})

t.test('the table: a row per x, a column per series, the fit under it', async (t) => {
  const table = curveTable({
    title: 'readings/s',
    x: 'backends',
    y: 'readings/s',
    series: [
      { name: 'capped', points: pts([1, 2, 3, 4], (x) => 1000 * x) },
      { name: 'uncapped', points: pts([1, 2, 4], () => 5000) },
    ],
    fit: true,
  })
  t.same(table.split('\n').slice(0, 6), [
    '| backends | capped (readings/s) | uncapped (readings/s) |',
    '|---:|---:|---:|',
    '| 1 | 1k | 5k |',
    '| 2 | 2k | 5k |',
    '| 3 | 3k | – |',
    '| 4 | 4k | 5k |',
  ])
  t.match(table, /capped: y = 1k x \+ 0 \(least squares, r² 1\.000, 4 points\)/)
})
