// Vagrant, as the lab uses it: which machines, in which state (Vagrant's own record of
// them: provision/vagrant-state.ts; each provider asked directly: providers.ts).
import { $ } from 'zx'
import { repoRoot } from '../../provision/paths.js'
import { knownMachines, vagrantHosts, vagrantMachines } from '../../provision/vagrant-state.js'
import { providerOps } from './providers.js'

/** Vagrant's word for a machine's state: running, stopped, not_created, or another it has. */
export type MachineState = string

/**
 * Each machine's state, as `vagrant status` says it. For lxc and libvirt machines it is
 * the provider's own word, asked directly (lxc-info, virsh: milliseconds), since
 * `vagrant status` takes about 10 s and every test file asks; a lab with any other
 * provider's machine, or a provider that cannot be asked, is asked of Vagrant.
 */
export async function machineStates(cwd = repoRoot): Promise<Map<string, MachineState>> {
  return (await statesFromProviders(cwd)) ?? vagrantStates(cwd)
}

async function statesFromProviders(cwd: string): Promise<Map<string, MachineState> | undefined> {
  const machines = vagrantMachines(cwd)
  const asked = await Promise.all(
    vagrantHosts(cwd).map(async (host): Promise<[string, MachineState | undefined]> => {
      const mine = machines.filter((m) => m.host === host)
      if (mine.length === 0) return [host, 'not_created']
      // Two providers' records for one host: only Vagrant can say which is live.
      if (mine.length > 1) return [host, undefined]
      return [host, await providerOps(mine[0].provider).state(mine[0].id)]
    }),
  )
  return asked.every(([, s]) => s !== undefined) ? new Map(asked as [string, MachineState][]) : undefined
}

/** `vagrant status` itself (hosts.ts checks machineStates against it). */
export async function vagrantStates(cwd = repoRoot): Promise<Map<string, MachineState>> {
  const r = await $({ cwd, quiet: true, nothrow: true })`vagrant status --machine-readable`
  const states = new Map<string, MachineState>()
  for (const line of r.stdout.split('\n')) {
    const f = line.split(',')
    if (f[2] === 'state' && f[1]) states.set(f[1], f[3])
  }
  if (r.exitCode !== 0 && states.size === 0)
    throw new Error(`vagrant status failed: ${r.stderr.trim() || r.stdout.trim()}`)
  return states
}

/** The LXC container names this clone's Vagrant state knows, by host. */
export const knownContainers = (cwd = repoRoot) => knownMachines('lxc', cwd)
