// The plan (provision/plan.ts), printed: topology.yaml validated and resolved.
//   tsx scripts/topology.ts json    one line of JSON for the Vagrantfile (Ruby): the plan,
//                                   with the boxes, VM settings, netmasks and a
//                                   container's cgroup keys it needs
//   tsx scripts/topology.ts plan    the same, indented, for a person (npm run plan)
//   tsx scripts/topology.ts check   exit 0 if valid, else the problems on stderr
import { loadPlan } from '../provision/plan.js'
import { vmAccel } from '../provision/providers.js'
import { repoRoot, topologyFile } from '../provision/paths.js'
import { boxName } from './lib/box.js'
import { cgroupVersion, lxcLimitKeys } from './lib/lxc-limits.js'
import { mgmtMac, prefixToMask } from './lib/libvirt.js'
import { vmBoxName } from './lib/vm-box.js'

try {
  const plan = loadPlan(topologyFile)
  const mode = process.argv[2] ?? 'plan'
  if (mode === 'check') {
    console.log(`${topologyFile}: ${plan.hosts.length} hosts on ${plan.networks.length} networks, valid`)
  } else {
    const cgroup = cgroupVersion()
    const forVagrant = {
      ...plan,
      hosts: plan.hosts.map((h) => ({
        ...h,
        vm_mac: mgmtMac(plan, h.name),
        lxc_limits: lxcLimitKeys(h.limits, cgroup),
        interfaces: h.interfaces.map((i) => ({ ...i, netmask: prefixToMask(i.prefix) })),
        mgmt: { ...h.mgmt, netmask: prefixToMask(h.mgmt.prefix) },
      })),
      box: boxName(),
      vm_box: process.env.LAB_VM_BOX || vmBoxName(),
      vm: vmAccel(),
      repoRoot,
    }
    process.stdout.write(JSON.stringify(forVagrant, null, mode === 'json' ? undefined : 2) + '\n')
  }
} catch (e) {
  console.error(e instanceof Error ? e.message : e)
  process.exit(1)
}
