// Vagrant, as the lab uses it: which machines, in which state (the providers are in
// providers.ts: planned, or read from Vagrant's state).
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { repoRoot } from '../../provision/paths.js'

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

type Output = { exitCode: number | null; stdout: string; stderr: string }

/**
 * How each provider is asked for a machine's state, and its answer in Vagrant's
 * spelling (vagrant-lxc and vagrant-libvirt say these); undefined where the answer is
 * not understood, and Vagrant is asked instead.
 */
const ASK: Record<
  string,
  { command: (id: string) => Promise<Output>; state: (r: Output) => MachineState | undefined }
> = {
  lxc: {
    command: (id) => $({ quiet: true, nothrow: true })`lxc-info -s -n ${id}`,
    state: (r) => {
      const word = /State:\s+(\S+)/.exec(r.stdout)?.[1]
      if (r.exitCode === 0 && word)
        return ({ RUNNING: 'running', STOPPED: 'stopped', FROZEN: 'frozen' } as Record<string, MachineState>)[word]
      if (r.exitCode !== 127 && /doesn't exist|does not exist/i.test(r.stderr + r.stdout)) return 'not_created'
      return undefined
    },
  },
  libvirt: {
    command: (id) => $({ quiet: true, nothrow: true })`virsh -c qemu:///system domstate ${id}`,
    state: (r) => {
      if (r.exitCode === 0)
        return (
          {
            running: 'running',
            'shut off': 'shutoff',
            paused: 'paused',
            'in shutdown': 'shutdown',
            crashed: 'crashed',
            pmsuspended: 'pmsuspended',
          } as Record<string, MachineState>
        )[r.stdout.trim()]
      if (/failed to get domain|Domain not found/i.test(r.stderr)) return 'not_created'
      // libvirtd not running (lab:down stops it, a reboot too): `vagrant status` fails
      // outright then; the machine is not running for the lab, whose bring-up starts
      // libvirt again.
      if (/Failed to connect socket|failed to connect to the hypervisor/i.test(r.stderr))
        return 'unknown (libvirt is not running)'
      return undefined
    },
  },
}

async function statesFromProviders(cwd: string): Promise<Map<string, MachineState> | undefined> {
  const dir = path.join(cwd, '.vagrant', 'machines')
  if (!fs.existsSync(dir)) return new Map()
  const asked = await Promise.all(
    fs.readdirSync(dir).map(async (host): Promise<[string, MachineState | undefined]> => {
      const providers = fs.readdirSync(path.join(dir, host)).filter((p) => fs.existsSync(path.join(dir, host, p, 'id')))
      if (providers.length === 0) return [host, 'not_created']
      const ask = providers.length === 1 ? ASK[providers[0]] : undefined
      if (!ask) return [host, undefined]
      return [
        host,
        ask.state(await ask.command(fs.readFileSync(path.join(dir, host, providers[0], 'id'), 'utf8').trim())),
      ]
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

/** The machine ids this clone's Vagrant state knows for a provider, by host (lxc: the container name; libvirt: the VM's UUID). */
export function knownMachines(provider: 'lxc' | 'libvirt', cwd = repoRoot): Map<string, string> {
  const known = new Map<string, string>()
  const dir = path.join(cwd, '.vagrant', 'machines')
  if (!fs.existsSync(dir)) return known
  for (const host of fs.readdirSync(dir)) {
    const id = path.join(dir, host, provider, 'id')
    if (fs.existsSync(id)) known.set(host, fs.readFileSync(id, 'utf8').trim())
  }
  return known
}

/** The LXC container names this clone's Vagrant state knows, by host. */
export const knownContainers = (cwd = repoRoot) => knownMachines('lxc', cwd)
