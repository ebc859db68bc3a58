// What a lab scenario needs of the lab (test/lib/lab.ts, `unmet`), decided from the
// plan and each host's provider alone: which scenarios test:vm leaves out.
import t from 'tap'
import { loadPlan } from '../../provision/plan.js'
import type { Provider } from '../../provision/providers.js'
import { unmet } from '../lib/lab.js'

const plan = loadPlan()
const labOf = (gateways: Provider, rest: Provider = 'lxc') => ({
  plan,
  provider: gateways === rest ? gateways : ('mixed' as const),
  providerOf: (name: string) => (plan.hosts.find((h) => h.name === name)?.role === 'gateway' ? gateways : rest),
})

t.test('a scenario that does not depend on the gateways runs on containers, and on VMs only when asked', async (t) => {
  const before = process.env.LAB_VM_REPEATS
  t.teardown(() => {
    if (before === undefined) delete process.env.LAB_VM_REPEATS
    else process.env.LAB_VM_REPEATS = before
  })
  delete process.env.LAB_VM_REPEATS
  t.equal(unmet(labOf('lxc'), { sameOnVms: true }), undefined, 'lxc gateways: it runs')
  t.match(
    unmet(labOf('libvirt'), { sameOnVms: true }),
    /does not depend on the gateways.*LAB_VM_REPEATS=1/,
    'VM gateways: left out, and how to run it',
  )
  t.equal(unmet(labOf('libvirt'), {}), undefined, 'a scenario without the requirement runs on VMs')
  t.match(unmet(labOf('libvirt'), { gateways: 'lxc' }), /needs lxc gateways/, 'one that needs lxc gateways does not')
  process.env.LAB_VM_REPEATS = '1'
  t.equal(unmet(labOf('libvirt'), { sameOnVms: true }), undefined, 'LAB_VM_REPEATS=1: it runs on VMs too')
})
