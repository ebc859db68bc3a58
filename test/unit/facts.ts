// Facts are read off the host itself in one command: its addresses, default route,
// virtualization and kernel. The output below is what a gateway VM printed (3 Dec 2026):
// `ip -j` ends its JSON with a newline and the command's echoes add blank lines, which
// the parser once took for fields (every host's virtualization read as "[]", so nothing
// could tell an emulated VM from a container).
import t from 'tap'
import { gatherFacts } from '../../provision/facts.js'
import { loadPlan } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'
import { FakeHost } from '../lib/fake.js'

const plan = loadPlan(topologyFile)
const self = plan.hosts.find((h) => h.name === 'gw-cloud')!
const addr = (ifname: string, local: string) =>
  ({ ifname, addr_info: [{ family: 'inet', local, prefixlen: 24 }] }) as const

const output = (virt: string) =>
  [
    JSON.stringify([
      addr('eth0', '192.168.121.5'),
      addr('eth1', self.addresses.mgmt),
      addr('eth2', self.addresses.inet),
      addr('eth3', self.addresses.cloud),
    ]),
    '',
    JSON.stringify([{ dst: 'default', gateway: '192.168.121.1', dev: 'eth0' }]),
    '',
    virt,
    '6.1.0-57-amd64',
    '',
  ].join('\n')

t.test("an emulated VM's facts: qemu, its kernel, each network's interface", async (t) => {
  const host = new FakeHost('gw-cloud', (cmd) =>
    cmd.startsWith('ip -j -4 addr')
      ? { code: 0, stdout: output('qemu'), stderr: '' }
      : { code: 0, stdout: 'libipsec\n', stderr: '' },
  )
  const facts = await gatherFacts(host, self)
  t.equal(facts.virtualization, 'qemu')
  t.equal(facts.kernel, '6.1.0-57-amd64')
  t.same(facts.interfaceOf, { mgmt: 'eth1', inet: 'eth2', cloud: 'eth3' })
  t.equal(facts.mgmtInterface, 'eth1')
})
