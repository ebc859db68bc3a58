// The libvirt provider: the hosts are QEMU VMs through vagrant-libvirt, from the VM box
// the lab builds (vm-box.ts), with KVM where the processor has it, else emulation
// (PLATFORM.md "VMs without KVM"). Wherever libvirt is installed the management bridge
// is libvirt's network (its DHCP gives the VMs their management addresses), so VMs can
// join a lab of containers later. Faults are made with virsh on the VM Vagrant recorded.
import fs from 'node:fs'
import path from 'node:path'
import { repoRoot } from '../../provision/paths.js'
import type { Host, Plan } from '../../provision/plan.js'
import { vmAccel } from '../../provision/providers.js'
import { knownMachines, type MachineRecord } from '../../provision/vagrant-state.js'
import {
  domainExists,
  domainOf,
  ensureLibvirtDaemons,
  ensureStoragePool,
  labDomains,
  labVolumes,
  libvirtAvailable,
  mgmtNetworkDefined,
  mgmtNetworkName,
  removeLabDomains,
  removeLabVolumes,
  removeMgmtNetwork,
  removeStaleDomains,
  runningLabDaemons,
  stopLabDaemons,
  virsh,
} from './libvirt.js'
import type { ProviderOps } from './provider-types.js'
import { LIBVIRT_REQUIREMENTS } from './system.js'
import { ensureVmBox } from './vm-box.js'

async function run(args: string[], what: string): Promise<void> {
  const r = await virsh(args)
  if (r.exitCode !== 0) throw new Error(`${what}: virsh ${args.join(' ')} failed: ${r.stderr.trim()}`)
}

/** The MACs of a VM's lab links (every network but management), from libvirt's own list. */
async function labMacs(m: MachineRecord, host: Host, plan: Plan): Promise<string[]> {
  const bridges = new Set(
    host.interfaces
      .filter((i) => i.network !== host.mgmt.network)
      .map((i) => plan.networks.find((n) => n.name === i.network)!.bridge),
  )
  const r = await virsh(['domiflist', m.id])
  if (r.exitCode !== 0) throw new Error(`${m.host}: virsh domiflist failed: ${r.stderr.trim()}`)
  // Interface  Type  Source  Model  MAC
  const macs = r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 5 && bridges.has(f[2]))
    .map((f) => f[4])
  if (macs.length !== bridges.size)
    throw new Error(`${m.host}: libvirt lists ${macs.length} of its ${bridges.size} lab links: ${r.stdout.trim()}`)
  return macs
}

async function setLinks(m: MachineRecord, host: Host, plan: Plan, state: 'up' | 'down'): Promise<void> {
  for (const mac of await labMacs(m, host, plan))
    await run(['domif-setlink', m.id, mac, state], `${m.host}: ${mac} ${state}`)
}

/**
 * vagrant-libvirt calls a running VM 'inaccessible' while a 2 s look-up of its DHCP
 * lease finds none, and Vagrant's wait for SSH, which asks for the state every second,
 * then gives up on a VM that is booting as it should (seen once in CI, 3 Dec 2026, on
 * three emulated VMs booting at once; the next `vagrant up` brought them up).
 */
export const leaseMissedAtBoot = (said: string): boolean =>
  /invalid state while waiting for it\s+to boot[\s\S]*?in the\s+'inaccessible' state/.test(said)

/** What libvirt knows of these hosts' VMs: state and its reason, DHCP leases, QEMU's last words. */
async function describeVms(hosts: string[], plan: Plan, log: (m: string) => void): Promise<void> {
  for (const host of hosts) {
    const domain = domainOf(plan, host)
    const state = await virsh(['domstate', '--reason', domain])
    log(`    ${host}: libvirt says ${(state.exitCode === 0 ? state.stdout : state.stderr).trim() || 'nothing'}`)
    const qemuLog = `/var/log/libvirt/qemu/${domain}.log`
    if (fs.existsSync(qemuLog)) {
      const last = fs.readFileSync(qemuLog, 'utf8').trim().split('\n').slice(-3)
      for (const line of last) log(`      ${qemuLog}: ${line}`)
    }
  }
  const leases = await virsh(['net-dhcp-leases', mgmtNetworkName(plan)])
  log(`    DHCP leases on ${mgmtNetworkName(plan)}:`)
  for (const line of (leases.exitCode === 0 ? leases.stdout : leases.stderr).trim().split('\n')) log(`      ${line}`)
}

/**
 * A paused VM's clock stood still (QEMU stops its virtual clock with its CPUs, and the
 * guest has no time server to catch up from): resumed, it lags by the pause, and a CRL
 * or certificate issued since is "not yet valid" to it (seen: a revocation the thawed
 * hub never acted on). Its clock is set from this machine's through the guest agent, as
 * a host that only hung would have kept time. The agent of a guest just resumed under
 * emulation may take seconds to answer.
 */
async function syncClock(m: MachineRecord): Promise<void> {
  let said = ''
  const until = Date.now() + 30_000
  do {
    const r = await virsh(['domtime', m.id, '--sync'])
    if (r.exitCode === 0) return
    said = r.stderr.trim()
    if (/not configured/.test(said)) break
    await new Promise((resolve) => setTimeout(resolve, 1000))
  } while (Date.now() < until)
  throw new Error(
    `${m.host}: thawed, but its clock could not be set from this machine's (virsh domtime --sync: ${said}); a VM made before the guest agent's channel was added needs remaking: npm run lab:down, then npm run lab`,
  )
}

/** Wherever libvirt is installed, the management bridge is its network (used now or later). */
async function ownsManagementNetwork(inUse: boolean): Promise<boolean> {
  return inUse || (await libvirtAvailable())
}

export const libvirtProvider: ProviderOps = {
  name: 'libvirt',
  requirements: LIBVIRT_REQUIREMENTS,
  onLabBridges: true,
  ownKernel: true,
  nicNames: 'guest',
  ownsManagementNetwork,
  async prepare({ plan, log, step, inUse }) {
    if (await ownsManagementNetwork(inUse)) {
      const accel = vmAccel()
      log(`VMs run with ${accel.accel === 'kvm' ? 'KVM' : `QEMU's emulation (TCG, ${accel.why})`}`)
      await step('libvirt', 'Starting libvirt (daemons, storage pool)', async () => {
        await ensureLibvirtDaemons(log)
        await ensureStoragePool(log)
        await removeStaleDomains(plan, new Set(knownMachines('libvirt').values()), log)
      })
    }
    if (inUse)
      await step('vm_box', 'Ensuring the VM box (built once, then cached)', () =>
        ensureVmBox(log).then((r) => {
          if (r.built) log(`    VM box built in ${r.seconds.toFixed(0)} s`)
        }),
      )
  },
  async upFailed(hosts, said, plan, log) {
    await describeVms(hosts, plan, log)
    return leaseMissedAtBoot(said)
  },
  async beforeDestroy(machines, log) {
    // Vagrant destroys a VM through libvirtd, which must answer; and a record whose VM
    // is already gone (removed as stale by another clone, whose lab:down then stopped
    // the daemons and the bridges) is only forgotten: vagrant-libvirt would first
    // refuse its networks, whose bridges are gone.
    if (machines.length === 0 || process.getuid?.() !== 0) return
    await ensureLibvirtDaemons(log)
    for (const m of machines) {
      if (await domainExists(m.id)) continue
      log(`    ${m.host}: its VM no longer exists (removed elsewhere); Vagrant's record of it is dropped`)
      fs.rmSync(path.join(repoRoot, '.vagrant', 'machines', m.host, 'libvirt'), { recursive: true, force: true })
    }
  },
  async state(id) {
    const r = await virsh(['domstate', id])
    if (r.exitCode === 0)
      return (
        {
          running: 'running',
          'shut off': 'shutoff',
          paused: 'paused',
          'in shutdown': 'shutdown',
          crashed: 'crashed',
          pmsuspended: 'pmsuspended',
        } as Record<string, string>
      )[r.stdout.trim()]
    if (/failed to get domain|Domain not found/i.test(r.stderr)) return 'not_created'
    // libvirtd not running (lab:down stops it, a reboot too): `vagrant status` fails
    // outright then; the machine is not running for the lab, whose bring-up starts
    // libvirt again.
    if (/Failed to connect socket|failed to connect to the hypervisor/i.test(r.stderr))
      return 'unknown (libvirt is not running)'
    return undefined
  },
  label: () => `libvirt (${vmAccel().accel})`,
  capturePoint: () => Promise.resolve({ on: 'guest' }),
  async cleanup(plan, log) {
    await removeLabDomains(plan, log)
    await removeLabVolumes(plan, log)
    await removeMgmtNetwork(plan, log)
  },
  release: (log) => stopLabDaemons(log),
  async remnants(plan) {
    return [
      ...(await labDomains(plan)).map((d) => `VM ${d}`),
      ...(await labVolumes(plan)).map((v) => `volume ${v}`),
      ...((await mgmtNetworkDefined(plan)) ? [`libvirt network ${mgmtNetworkName(plan)}`] : []),
      ...runningLabDaemons().map((d) => `daemon ${d}`),
    ]
  },
  faults: {
    stopHard: (m) => run(['destroy', m.id], `${m.host}: stop hard`),
    start: (m) => run(['start', m.id], `${m.host}: start`),
    freeze: (m) => run(['suspend', m.id], `${m.host}: freeze`),
    thaw: async (m) => {
      await run(['resume', m.id], `${m.host}: thaw`)
      await syncClock(m)
    },
    isolate: (m, host, plan) => setLinks(m, host, plan, 'down'),
    rejoin: (m, host, plan) => setLinks(m, host, plan, 'up'),
  },
}
