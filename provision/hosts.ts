// SSH connections to a set of lab hosts, from Vagrant's inventory, for the tools that
// work on the running lab (pki actions, the benchmark). A host that cannot be reached
// is named, with what to do.
import { vagrantInventory, type InventoryHost } from './inventory.js'
import { SshHost, type RemoteHost } from './ssh.js'

export interface Hosts {
  get(name: string): RemoteHost
  close(): Promise<void>
}

export async function connectHosts(hosts: InventoryHost[], repoRoot: string): Promise<Hosts> {
  const names = hosts.map((h) => h.name)
  const inv = await vagrantInventory(hosts, repoRoot)
  if (inv.missing.size)
    throw new Error(
      `cannot reach ${[...inv.missing.keys()].join(', ')}: ${[...inv.missing.values()][0]}. Is the lab up (npm run lab)?`,
    )
  const conns = new Map<string, RemoteHost>()
  try {
    await Promise.all(
      names.map(async (n) => {
        conns.set(n, await SshHost.connect(inv.entries.get(n)!))
      }),
    )
  } catch (e) {
    for (const c of conns.values()) await c.close()
    throw e
  }
  return {
    get(name) {
      const c = conns.get(name)
      if (!c) throw new Error(`no connection to ${name}`)
      return c
    },
    async close() {
      for (const c of conns.values()) await c.close()
    },
  }
}
