// waitFor, the one way the lab waits: polls until the probe answers, and, when asked,
// spaces its probes so that probing takes at most a share of the time (a probe that
// costs the watched host what it is waiting for must not starve it).
import t from 'tap'
import { pauseAfter, waitFor } from '../../provision/lib/wait.js'

t.test('the pause: everyMs, or longer so that probing takes at most its share', async (t) => {
  t.equal(pauseAfter(800, 250), 250, 'no share: every 250 ms whatever the probe costs')
  t.equal(pauseAfter(800, 250, 0.1), 7200, 'a 0.8 s probe at a tenth: 7.2 s between probes')
  t.equal(pauseAfter(20, 250, 0.1), 250, 'a cheap probe keeps the interval asked for')
  t.equal(pauseAfter(800, 250, 1), 250)
  t.throws(() => pauseAfter(10, 250, 0), /probeShare must be above 0 and at most 1, not 0/)
  t.throws(() => pauseAfter(10, 250, 1.5), /not 1.5/)
})

t.test('a slow probe is spaced out: probing takes at most its share of the wait', async (t) => {
  let busy = 0
  let calls = 0
  const started = Date.now()
  await waitFor(
    'the fourth answer',
    async () => {
      const t0 = Date.now()
      await new Promise((r) => setTimeout(r, 100))
      busy += Date.now() - t0
      return ++calls === 4
    },
    10_000,
    10,
    { probeShare: 0.25 },
  )
  const total = Date.now() - started
  t.equal(calls, 4)
  // Three pauses of at least 3 x 100 ms each after the first three probes.
  t.ok(total >= 4 * 100 + 3 * 300, `four probes of 100 ms took ${total} ms in all, pauses included`)
  t.ok(busy / total <= 0.4, `probing took ${Math.round((100 * busy) / total)} % of the time`)
})

t.test('without a share the interval is as asked, and the deadline names what was waited for', async (t) => {
  let calls = 0
  await t.rejects(
    waitFor(
      'something that never comes',
      async () => {
        calls++
        return false
      },
      300,
      50,
    ),
    /timed out after 0 s waiting for something that never comes/,
  )
  t.ok(calls >= 4, `polled every 50 ms (${calls} probes in 300 ms)`)
})
