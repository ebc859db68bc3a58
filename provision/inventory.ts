// The SSH inventory comes from Vagrant itself (`vagrant ssh-config`), whatever the
// provider: lxc gives the management address, VirtualBox a forwarded port on
// 127.0.0.1. Machines that are not created or not running are named, not guessed.
import { $ } from 'zx'

export interface InventoryEntry { name: string; hostName: string; port: number; user: string; identityFile: string }

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
    if (key === 'host') { flush(); current = { name: value } }
    else if (key === 'hostname') current.hostName = value
    else if (key === 'port') current.port = Number(value)
    else if (key === 'user') current.user = value
    else if (key === 'identityfile' && !current.identityFile) current.identityFile = value
  }
  flush()
  return entries
}

export interface Inventory { entries: Map<string, InventoryEntry>; missing: Map<string, string> }

/** Ask Vagrant for every named machine; those it cannot give are listed with why. */
export async function vagrantInventory(names: string[], cwd: string): Promise<Inventory> {
  const r = await $({ cwd, quiet: true, nothrow: true })`vagrant ssh-config ${names}`
  const entries = parseSshConfig(r.stdout)
  const missing = new Map<string, string>()
  for (const name of names) {
    if (!entries.has(name)) missing.set(name, 'Vagrant has no SSH address for it (not created or not running)')
  }
  return { entries, missing }
}
