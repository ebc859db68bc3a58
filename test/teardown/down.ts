// Run apart from `npm test` (by `npm run test:teardown`, and by CI after `npm test`),
// since it destroys the lab: `npm run lab:down` leaves nothing behind on this
// machine: no container, VM, volume, libvirt network, bridge, cgroup, mount or
// daemon of the lab's.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import t from 'tap'
import { loadPlan } from '../../provision/plan.js'
import { labRemnants } from '../../scripts/lib/lab.js'
import { repoRoot, topologyFile } from '../../provision/paths.js'
import { openLab } from '../lib/lab.js'

const why = !process.env.LAB_TEST_DOWN && 'this destroys the lab: run it with `npm run test:teardown`'
t.test('npm run lab:down leaves nothing behind', { skip: why }, async (t) => {
  const lab = await openLab(t, { provision: false })
  if (!lab) return
  const plan = loadPlan(topologyFile)
  t.not((await labRemnants(plan)).length, 0, 'the lab is there before (control)')
  // Its hosts are about to go: connections to them would wait on sockets nobody answers.
  await lab.close()
  execFileSync(`${repoRoot}/node_modules/.bin/tsx`, ['scripts/lab.ts', 'down'], { cwd: repoRoot, stdio: 'pipe' })
  t.same(
    await labRemnants(plan),
    [],
    'no container, VM, volume, libvirt network, bridge, cgroup, mount or daemon of the lab left',
  )
  const links = fs.readdirSync('/sys/class/net').filter((n) => n.startsWith(`${plan.name}-`))
  t.same(links, [], 'no network interface of the lab')
  if (fs.existsSync('/usr/bin/lxc-ls'))
    t.same(
      execFileSync('lxc-ls', ['-1'])
        .toString()
        .split('\n')
        .filter((c) => c.startsWith(`${plan.name}-`)),
      [],
      'lxc-ls lists none of its containers',
    )
  // Looked for among the tables nft lists: a failing nft throws (a failure), where the
  // old check read any error of `nft list table` as "the table is gone".
  const tables = execFileSync('nft', ['list', 'tables'], { stdio: 'pipe' }).toString()
  t.notMatch(tables, new RegExp(`^table inet ${plan.name}_guard$`, 'm'), 'its nftables guard table is gone')
})
