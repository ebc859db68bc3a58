// The providers of the running lab, from Vagrant's own state (provision/vagrant-state.ts),
// never guessed from what is installed (which provider a bring-up will use is the plan's
// question: provision/providers.ts); and the registry of provider modules: the lab
// command and the tests ask it for a provider's operations and never branch on a name.
import type { Provider } from '../../provision/providers.js'
import { repoRoot } from '../../provision/paths.js'
import { vagrantMachines, type MachineRecord } from '../../provision/vagrant-state.js'
import { libvirtProvider } from './provider-libvirt.js'
import { lxcProvider } from './provider-lxc.js'
import type { ProviderOps } from './provider-types.js'
import { virtualboxProvider } from './provider-virtualbox.js'

const REGISTRY: Record<Provider, ProviderOps> = {
  lxc: lxcProvider,
  libvirt: libvirtProvider,
  virtualbox: virtualboxProvider,
}

export const providerOps = (p: Provider): ProviderOps => REGISTRY[p]
/** Every provider module, in the order a bring-up prepares and starts them: VMs first (in parallel, libvirt's way), containers last. */
export const ALL_PROVIDERS: ProviderOps[] = [libvirtProvider, virtualboxProvider, lxcProvider]

/** The providers of the hosts Vagrant has created in this clone, from its own state. */
export function runningProviders(cwd = repoRoot): Map<string, Provider> {
  return new Map(vagrantMachines(cwd).map((m) => [m.host, m.provider]))
}

/** The machine Vagrant has for a host, with its provider's operations: where its faults are made. */
export function machineOf(host: string, cwd = repoRoot): { machine: MachineRecord; ops: ProviderOps } {
  const records = vagrantMachines(cwd).filter((m) => m.host === host)
  if (records.length !== 1)
    throw new Error(
      records.length === 0
        ? `${host} has no machine in this clone's Vagrant state: npm run lab`
        : `${host} has machines of ${records.map((m) => m.provider).join(' and ')}: npm run lab remakes it with one`,
    )
  return { machine: records[0], ops: providerOps(records[0].provider) }
}

/** One word for a set of providers: the provider, or 'mixed'. */
export function providerSummary(providers: Iterable<Provider>): Provider | 'mixed' | 'none' {
  const set = new Set(providers)
  if (set.size === 0) return 'none'
  return set.size === 1 ? [...set][0] : 'mixed'
}

export const hostsOf = (providers: Record<string, Provider> | Map<string, Provider>, p: Provider) =>
  [...(providers instanceof Map ? providers : new Map(Object.entries(providers)))]
    .filter(([, v]) => v === p)
    .map(([k]) => k)
