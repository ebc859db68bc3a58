// The SSH inventory comes from Vagrant: from its state where the lab itself decides the
// address (lxc and libvirt machines answer on the topology's management address), else
// from `vagrant ssh-config` (VirtualBox: a forwarded port on 127.0.0.1). Machines that
// are not created or not running are named, not guessed.
import { $ } from 'zx'
import { SSH_ON_MANAGEMENT } from './providers.js'
import { vagrantMachines } from './vagrant-state.js'

export interface InventoryEntry {
  name: string
  hostName: string
  port: number
  user: string
  identityFile: string
}

/** Parse `vagrant ssh-config` output (OpenSSH client config syntax). */
export function parseSshConfig(text: string): Map<string, InventoryEntry> {
  const entries = new Map<string, InventoryEntry>()
  let current: Partial<InventoryEntry> & { name?: string } = {}
  const flush = () => {
    if (!current.name) return
    const missing = (['hostName', 'user', 'identityFile'] as const).filter((k) => !current[k])
    if (missing.length) throw new Error(`vagrant ssh-config: host ${current.name} has no ${missing.join(', ')}`)
    entries.set(current.name, { port: 22, ...current } as InventoryEntry)
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const m = /^(\S+)\s+(.*)$/.exec(line)
    if (!m) continue
    const [key, value] = [m[1].toLowerCase(), m[2].replace(/^"(.*)"$/, '$1')]
    if (key === 'host') {
      flush()
      current = { name: value }
    } else if (key === 'hostname') current.hostName = value
    else if (key === 'port') current.port = Number(value)
    else if (key === 'user') current.user = value
    else if (key === 'identityfile' && !current.identityFile) current.identityFile = value
  }
  flush()
  return entries
}

export interface Inventory {
  entries: Map<string, InventoryEntry>
  missing: Map<string, string>
}

/** What the inventory needs of a host: its name and, if known, its management address. */
export interface InventoryHost {
  name: string
  mgmt?: { address: string }
}

/**
 * The entry `vagrant ssh-config` gives an lxc or libvirt machine, read from Vagrant's own
 * state: the Vagrantfile puts it on the topology's management address (lxc.ssh_ip_addr;
 * libvirt's DHCP reservation for the host's MAC), port 22, user vagrant, with the key
 * Vagrant wrote for that machine. Undefined where that does not hold (no id, another
 * provider, no key of its own yet): Vagrant is asked then.
 */
export function stateEntry(host: InventoryHost, cwd: string): InventoryEntry | undefined {
  if (!host.mgmt) return undefined
  const m = vagrantMachines(cwd).find(
    (r) => r.host === host.name && SSH_ON_MANAGEMENT.includes(r.provider) && r.privateKey,
  )
  return m && { name: host.name, hostName: host.mgmt.address, port: 22, user: 'vagrant', identityFile: m.privateKey! }
}

/**
 * Every named machine's SSH entry; those that cannot be given are listed with why.
 * `vagrant ssh-config` costs about 10 s (Ruby and a provider plugin per machine), paid
 * by every test file, provision and lab:impair, so it is asked only for the machines
 * whose entry Vagrant's state does not already say (stateEntry).
 */
export async function vagrantInventory(hosts: InventoryHost[], cwd: string): Promise<Inventory> {
  const entries = new Map<string, InventoryEntry>()
  for (const h of hosts) {
    const e = stateEntry(h, cwd)
    if (e) entries.set(h.name, e)
  }
  const names = hosts.map((h) => h.name)
  const ask = names.filter((n) => !entries.has(n))
  if (ask.length) {
    const r = await $({ cwd, quiet: true, nothrow: true })`vagrant ssh-config ${ask}`
    for (const [n, e] of parseSshConfig(r.stdout)) entries.set(n, e)
  }
  const missing = new Map<string, string>()
  for (const name of names) {
    if (!entries.has(name)) missing.set(name, 'Vagrant has no SSH address for it (not created or not running)')
  }
  return { entries, missing }
}
