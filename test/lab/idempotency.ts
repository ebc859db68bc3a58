// A second provision changes nothing and says so; drift is seen by --dry-run
// without being fixed, then fixed by a real run, and the run after is clean again.
import t from 'tap'
import { labCli, openLab } from '../lib/lab.js'

const provisionCli = async (...args: string[]) => (await labCli('provision/cli.ts', args)).stdout
const json = async (...args: string[]) =>
  JSON.parse(await provisionCli('--json', ...args)) as {
    summary: { hosts: number; changed: number; failed: number; unreachable: number }
    hosts: { host: string; steps: { name: string; status: string }[] }[]
  }

const lab = await openLab(t)
if (lab) {
  const [victim] = lab.byRole('db')

  t.test('a second provision changes nothing, and says so', async (t) => {
    await provisionCli() // whatever state the lab is in, this run converges it
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
    const dry = await json('--dry-run')
    const changed = dry.hosts.flatMap((h) =>
      h.steps.filter((s) => s.status === 'changed').map((s) => `${h.host}: ${s.name}`),
    )
    t.same(changed, [`${victim.name}: Ensure /etc/hosts names every lab host`], 'exactly the drifted step would change')
    t.match((await lab.sh(victim.name, 'cat /etc/hosts')).stdout, /intruder/, 'dry-run changed nothing')

    const fix = await json(victim.name)
    t.equal(fix.summary.changed, 1, 'a real run fixes it')
    t.notMatch((await lab.sh(victim.name, 'cat /etc/hosts')).stdout, /intruder/)
    t.equal((await json()).summary.changed, 0, 'and the next run is clean')
  })
}
