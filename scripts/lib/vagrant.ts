// Vagrant, as the lab uses it: which machines, in which state (the providers are in
// providers.ts: planned, or read from Vagrant's state).
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { repoRoot } from './paths.js'

export type MachineState = 'running' | 'stopped' | 'not_created' | string

export async function machineStates(cwd = repoRoot): Promise<Map<string, MachineState>> {
  const r = await $({ cwd, quiet: true, nothrow: true })`vagrant status --machine-readable`
  const states = new Map<string, MachineState>()
  for (const line of r.stdout.split('\n')) {
    const f = line.split(',')
    if (f[2] === 'state' && f[1]) states.set(f[1], f[3])
  }
  if (r.exitCode !== 0 && states.size === 0) throw new Error(`vagrant status failed: ${r.stderr.trim() || r.stdout.trim()}`)
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
