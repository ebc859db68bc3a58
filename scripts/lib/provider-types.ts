// What the lab asks of a provider, whichever it is (netlab's providers and containerlab's
// node kinds are the model): the lab command and the tests say what is done; each
// provider module (provider-lxc.ts, provider-libvirt.ts, provider-virtualbox.ts) says how.
// The registry (providers.ts) hands out the module for a name; nobody branches on one.
import type { Host, Plan } from '../../provision/plan.js'
import type { Provider } from '../../provision/providers.js'
import type { MachineRecord } from '../../provision/vagrant-state.js'
import type { Link } from './links.js'
import type { Requirement } from './system.js'

export type Log = (m: string) => void
export type Timed = <T>(key: string, title: string, fn: () => Promise<T>) => Promise<T>

export interface PrepareContext {
  plan: Plan
  log: Log
  step: Timed
  /** Does the lab about to come up have hosts of this provider? (Some prepare even when not.) */
  inUse: boolean
}

/** Where a capture on one of a host's interfaces listens. */
export type CapturePoint = { on: 'machine'; iface: string } | { on: 'guest' }

/**
 * Faults on a whole host, each with its undo; the host keeps its management link
 * throughout (isolate cuts its lab networks only), so a test can watch and put it back.
 */
export interface HostFaults {
  /** Power cut: no shutdown, nothing flushed. */
  stopHard(m: MachineRecord): Promise<void>
  /** Start it again after stopHard (its services come back as at boot). */
  start(m: MachineRecord): Promise<void>
  /** Every process paused: it answers nothing, holds its connections, loses no state. */
  freeze(m: MachineRecord): Promise<void>
  thaw(m: MachineRecord): Promise<void>
  /** Its links to every lab network but management go down (as a cable pulled). */
  isolate(m: MachineRecord, host: Host, plan: Plan): Promise<void>
  rejoin(m: MachineRecord, host: Host, plan: Plan): Promise<void>
}

export interface ProviderOps {
  readonly name: Provider
  /** Debian packages and commands this machine needs for the provider's hosts. */
  readonly requirements: Requirement[]
  /** Are its hosts made as root here, on the lab's own bridges? (VirtualBox: neither.) */
  readonly onLabBridges: boolean
  /** Does a host run its own kernel (a VM: ESP, netem) or this machine's (a container: neither here)? */
  readonly ownKernel: boolean
  /** A host's lab NICs inside it: named after their networks (lxc: the Vagrantfile's keys), or the guest's own names (VMs). */
  readonly nicNames: 'network' | 'guest'
  /** Will the management bridge be this provider's network (libvirt's DHCP for VMs)? */
  ownsManagementNetwork(inUse: boolean): Promise<boolean>
  /** Before `vagrant up`: its box, daemons, stale resources. Idempotent. */
  prepare(ctx: PrepareContext): Promise<void>
  /**
   * `vagrant up` of these hosts failed, saying `said`: log what the provider knows of
   * them (the VM's state and why), and answer whether one more `vagrant up` is the
   * remedy (a known miss of the provider plugin's own, not of the lab or the host).
   */
  upFailed?(hosts: string[], said: string, plan: Plan, log: Log): Promise<boolean>
  /**
   * After `vagrant up` of these machines: what a running host must be given that `up`
   * gives only when it starts one (lxc: the topology's cgroup limits), said where it changed.
   */
  afterUp?(machines: MachineRecord[], plan: Plan, log: Log): Promise<void>
  /** Before `vagrant destroy` of these machines: what Vagrant would trip over. */
  beforeDestroy?(machines: MachineRecord[], log: Log): Promise<void>
  /** A machine's state in Vagrant's spelling, asked of the provider itself (ms, not `vagrant status`'s 10 s); undefined: not understood, ask Vagrant. */
  state(id: string): Promise<string | undefined>
  /** The provider's cell in lab:status. */
  label(): string
  /** A capture on one of a running host's interfaces: on this machine, or inside the guest. */
  capturePoint(link: Extract<Link, { kind: 'interface' }>): Promise<CapturePoint>
  /** lab:down: remove what the provider made for the lab, whether Vagrant still knows it or not. */
  cleanup(plan: Plan, log: Log): Promise<void>
  /** lab:down, after the bridges are gone: the daemons the lab started for it. */
  release?(log: Log): Promise<void>
  /** What of the lab it left on this machine (empty after lab:down). */
  remnants(plan: Plan): Promise<string[]>
  readonly faults: HostFaults
}
