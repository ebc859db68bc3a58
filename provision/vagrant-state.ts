// Vagrant's own record of this clone's machines, the one reader of its layout:
// .vagrant/machines/HOST/PROVIDER/id (lxc: the container's name; libvirt: the VM's
// UUID; virtualbox: the VM's UUID), and private_key beside it once Vagrant has put a key
// of its own in the machine. The running lab's providers, states, SSH entries and
// faults all start here, never from what is installed.
import fs from 'node:fs'
import path from 'node:path'
import { repoRoot } from './paths.js'
import { PROVIDERS, type Provider } from './providers.js'

export interface MachineRecord {
  host: string
  provider: Provider
  /** The provider's own name for the machine. */
  id: string
  /** Vagrant's key for it, when it has replaced the insecure one. */
  privateKey?: string
}

const machinesDir = (cwd: string) => path.join(cwd, '.vagrant', 'machines')

/** The hosts Vagrant has a folder for (created, or only named once). */
export function vagrantHosts(cwd = repoRoot): string[] {
  const dir = machinesDir(cwd)
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}

/** Every machine Vagrant has created in this clone, in the order of PROVIDERS per host. */
export function vagrantMachines(cwd = repoRoot): MachineRecord[] {
  const out: MachineRecord[] = []
  for (const host of vagrantHosts(cwd)) {
    for (const provider of PROVIDERS) {
      const dir = path.join(machinesDir(cwd), host, provider)
      const idFile = path.join(dir, 'id')
      if (!fs.existsSync(idFile)) continue
      const key = path.join(dir, 'private_key')
      out.push({
        host,
        provider,
        id: fs.readFileSync(idFile, 'utf8').trim(),
        ...(fs.existsSync(key) ? { privateKey: key } : {}),
      })
    }
  }
  return out
}

/** The machine ids this clone's Vagrant state knows for a provider, by host (lxc: the container name; libvirt: the VM's UUID). */
export const knownMachines = (provider: Provider, cwd = repoRoot): Map<string, string> =>
  new Map(
    vagrantMachines(cwd)
      .filter((m) => m.provider === provider)
      .map((m) => [m.host, m.id]),
  )
