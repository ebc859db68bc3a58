// Prints the resolved topology as JSON, for the Vagrantfile (Ruby), or validates it.
//   tsx scripts/topology.ts json        resolved topology, boxes, providers, VM settings
//   tsx scripts/topology.ts check       exit 0 if valid, else the problems on stderr
import { loadTopology, TopologyError } from '../provision/topology.js'
import { boxName } from './lib/box.js'
import { mgmtMac, prefixToMask, vmAccel } from './lib/libvirt.js'
import { repoRoot, topologyFile } from '../provision/paths.js'
import { planProviders } from './lib/providers.js'
import { vmBoxName } from './lib/vm-box.js'

try {
  const topology = loadTopology(topologyFile)
  if (process.argv[2] === 'check') {
    console.log(`${topologyFile}: ${topology.hosts.length} hosts on ${topology.networks.length} networks, valid`)
  } else {
    const plan = planProviders(topology)
    process.stdout.write(
      JSON.stringify({
        ...topology,
        hosts: topology.hosts.map((h) => ({
          ...h,
          provider: plan.providers[h.name],
          vm_mac: mgmtMac(topology, h.name),
          interfaces: h.interfaces.map((i) => ({ ...i, netmask: prefixToMask(i.prefix) })),
          mgmt: { ...h.mgmt, netmask: prefixToMask(h.mgmt.prefix) },
        })),
        box: boxName(),
        vm_box: process.env.LAB_VM_BOX || vmBoxName(),
        vm: vmAccel(),
        provider_reason: plan.reason,
        repoRoot,
      }) + '\n',
    )
  }
} catch (e) {
  console.error(e instanceof TopologyError || e instanceof Error ? e.message : e)
  process.exit(1)
}
