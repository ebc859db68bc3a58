// A second provision changes nothing and says so; drift is seen by --dry-run
// without being fixed, then fixed by a real run, and the run after is clean again.
import t from 'tap'
import type { Test } from 'tap'
import { failures } from '../../provision/report.js'
import type { HostRecap } from '../../provision/runner.js'
import { labCli, openLab } from '../lib/lab.js'

/** The CLI's output; a run where something failed (exit 2) too: the test then says what it printed. */
async function provisionCli(...args: string[]): Promise<string> {
  try {
    return (await labCli('provision/cli.ts', args)).stdout
  } catch (e) {
    const out = (e as { code?: unknown; stdout?: string }).stdout
    if ((e as { code?: unknown }).code !== 2 || !out) throw e
    return out
  }
}

/** What `provision --json` prints. */
type Run = { summary: { changed: number }; hosts: HostRecap[] }

/**
 * A run's recap as JSON. A run where a step failed exits 2 and its recap is read all
 * the same: the test then names what failed and why (the whole JSON in an exception
 * said neither where CI's log cut it).
 */
async function json(t: Test, ...args: string[]): Promise<Run> {
  const run = JSON.parse(await provisionCli('--json', ...args)) as Run
  const failed = failures(run.hosts)
  t.same(failed, [], `provision ${args.join(' ')}: nothing failed${failed.length ? `:\n${failed.join('\n')}` : ''}`)
  return run
}

const lab = await openLab(t)
if (lab) {
  const [victim] = lab.byRole('db')

  t.test('a second provision changes nothing, and says so', async (t) => {
    await json(t) // whatever state the lab is in, this run converges it (or says what failed)
    const out = await provisionCli()
    t.match(
      out,
      new RegExp(`Done: ${lab.plan.hosts.length} hosts, 0 changed, 0 failed, 0 unreachable: nothing to change`),
    )
  })

  t.test('drift is reported by --dry-run, left alone by it, and fixed by a run', async (t) => {
    // Registered before the drift is made: whatever fails below, the line goes again.
    t.teardown(async () => {
      await lab.sh(victim.name, "sed -i '/ intruder$/d' /etc/hosts")
    })
    await lab.sh(victim.name, 'echo "10.99.99.99 intruder" >> /etc/hosts')
    const dry = await json(t, '--dry-run')
    const changed = dry.hosts.flatMap((h) =>
      h.steps.filter((s) => s.status === 'changed').map((s) => `${h.host}: ${s.name}`),
    )
    t.same(changed, [`${victim.name}: Ensure /etc/hosts names every lab host`], 'exactly the drifted step would change')
    t.match((await lab.sh(victim.name, 'cat /etc/hosts')).stdout, /intruder/, 'dry-run changed nothing')

    const fix = await json(t, victim.name)
    t.equal(fix.summary.changed, 1, 'a real run fixes it')
    t.notMatch((await lab.sh(victim.name, 'cat /etc/hosts')).stdout, /intruder/)
    t.equal((await json(t)).summary.changed, 0, 'and the next run is clean')
  })
}
