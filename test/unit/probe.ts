// Reachability probes all at once (test/lib/probe.ts): one command per source host, its
// probes in the background, the hosts asked together, the answers in the order asked.
import t from 'tap'
import type { ExecResult } from '../../provision/ssh.js'
import { probeScript, reachable } from '../lib/probe.js'

t.test('each probe in the background, one wait for all', async (t) => {
  const s = probeScript(
    [
      { from: 'a', address: '10.20.0.21', port: 8443 },
      { from: 'a', address: '10.20.0.22' },
    ],
    2,
  )
  t.equal(
    s,
    '( nc -z -w 2 10.20.0.21 8443 >/dev/null 2>&1; echo "0 $?" ) &\n( ping -c 2 -i 0.2 -W 2 10.20.0.22 >/dev/null 2>&1; echo "1 $?" ) &\nwait',
  )
})

t.test('the hosts are asked at the same time, each once', async (t) => {
  let active = 0
  let most = 0
  const asked: string[] = []
  const fake = async (host: string, command: string): Promise<ExecResult> => {
    asked.push(host)
    most = Math.max(most, ++active)
    await new Promise((r) => setTimeout(r, 20))
    active--
    const n = command.split('\n').length - 1
    return { code: 0, stdout: Array.from({ length: n }, (_, i) => `${i} ${i % 2}`).join('\n'), stderr: '' }
  }
  const got = await reachable(
    fake,
    ['a', 'b', 'a', 'c', 'a'].map((from, i) => ({ from, address: `10.0.0.${i}`, port: 22 })),
  )
  t.same(asked.sort(), ['a', 'b', 'c'], 'one command per host')
  t.equal(most, 3, 'all three at once')
  t.same(got, [true, true, false, true, true], "each host's answers back in their places")
})

t.test('a probe with no answer is an error naming it, not a refusal', async (t) => {
  const silent = async (): Promise<ExecResult> => ({ code: 255, stdout: '', stderr: 'ssh: connection lost' })
  await t.rejects(
    reachable(silent, [{ from: 'proxy-1', address: '10.20.0.31', port: 5432 }]),
    /no answer for proxy-1 → 10\.20\.0\.31:5432/,
  )
})
