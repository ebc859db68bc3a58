// The virtualbox provider: VMs from a stock box (LAB_VM_BOX, debian/bookworm64 by
// default, which the lab does not build), on VirtualBox's internal networks, managed
// through Vagrant's NAT port: nothing of it lives on this machine's bridges. Its faults
// use VBoxManage. Written for machines with VirtualBox; ours have none (no KVM), so
// this module is type-checked here but has not run (docs/providers.md).
import { $ } from 'zx'
import type { MachineRecord } from '../../provision/vagrant-state.js'
import { installedBoxes } from './box.js'
import type { ProviderOps } from './provider-types.js'

const q = { quiet: true, nothrow: true }

async function vbox(args: string[], what: string): Promise<void> {
  const r = await $(q)`VBoxManage ${args}`
  if (r.exitCode !== 0) throw new Error(`${what}: VBoxManage ${args.join(' ')} failed: ${r.stderr.trim()}`)
}

/** NIC 1 is Vagrant's NAT (management); the lab's networks follow, in the host's order. */
const labNics = (host: { interfaces: unknown[] }) => Array.from({ length: host.interfaces.length - 1 }, (_, i) => i + 2)

const setLinks = (m: MachineRecord, host: { interfaces: unknown[] }, state: 'on' | 'off') =>
  labNics(host).reduce(
    (p, n) => p.then(() => vbox(['controlvm', m.id, `setlinkstate${n}`, state], `${m.host}: NIC ${n} ${state}`)),
    Promise.resolve(),
  )

export const virtualboxProvider: ProviderOps = {
  name: 'virtualbox',
  requirements: [],
  onLabBridges: false,
  ownKernel: true,
  nicNames: 'guest',
  ownsManagementNetwork: () => Promise.resolve(false),
  async prepare({ inUse }) {
    if (!inUse) return
    // VirtualBox brings its own internal networks; its box is not built here, and
    // Vagrant would try to download it: say so instead of trying.
    const box = process.env.LAB_VM_BOX || 'debian/bookworm64'
    if (!(await installedBoxes()).includes(box)) {
      throw new Error(
        `the virtualbox provider needs the box ${box}, which is not on this machine and is not built by the lab (only the lxc and libvirt boxes are): add it with \`vagrant box add ${box}\` where it can be downloaded, or set LAB_VM_BOX to a VirtualBox box you have`,
      )
    }
  },
  // Vagrant is asked (`vagrant status`): VirtualBox's own words are not mapped here.
  state: () => Promise.resolve(undefined),
  label: () => 'virtualbox',
  capturePoint: () => Promise.resolve({ on: 'guest' }),
  // `vagrant destroy` removes its VMs; nothing of the lab is left on this machine's bridges.
  cleanup: () => Promise.resolve(),
  remnants: () => Promise.resolve([]),
  faults: {
    stopHard: (m) => vbox(['controlvm', m.id, 'poweroff'], `${m.host}: stop hard`),
    start: (m) => vbox(['startvm', m.id, '--type', 'headless'], `${m.host}: start`),
    freeze: (m) => vbox(['controlvm', m.id, 'pause'], `${m.host}: freeze`),
    thaw: (m) => vbox(['controlvm', m.id, 'resume'], `${m.host}: thaw`),
    isolate: (m, host) => setLinks(m, host, 'off'),
    rejoin: (m, host) => setLinks(m, host, 'on'),
  },
}
