// Vagrant, as the lab uses it: which provider, which machines, in which state.
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { repoRoot } from './paths.js'
import { hasCommand } from './system.js'

export type Provider = 'lxc' | 'virtualbox' | 'libvirt'

/**
 * The provider: LAB_PROVIDER or VAGRANT_DEFAULT_PROVIDER if set; else VirtualBox or
 * libvirt when installed (real VMs, kernel ESP); else lxc, the case of a Linux machine
 * with no hypervisor.
 */
export async function detectProvider(): Promise<Provider> {
  const wanted = process.env.LAB_PROVIDER ?? process.env.VAGRANT_DEFAULT_PROVIDER
  if (wanted) {
    if (!['lxc', 'virtualbox', 'libvirt'].includes(wanted)) throw new Error(`provider ${wanted} is not supported: use lxc, virtualbox or libvirt`)
    return wanted as Provider
  }
  if (await hasCommand('VBoxManage')()) return 'virtualbox'
  if ((await hasCommand('vagrant')()) && /vagrant-libvirt/.test((await $({ quiet: true, nothrow: true })`vagrant plugin list`).stdout)) return 'libvirt'
  return 'lxc'
}

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

/** The LXC container names this clone's Vagrant state knows, by host. */
export function knownContainers(cwd = repoRoot): Map<string, string> {
  const known = new Map<string, string>()
  const dir = path.join(cwd, '.vagrant', 'machines')
  if (!fs.existsSync(dir)) return known
  for (const host of fs.readdirSync(dir)) {
    const id = path.join(dir, host, 'lxc', 'id')
    if (fs.existsSync(id)) known.set(host, fs.readFileSync(id, 'utf8').trim())
  }
  return known
}
