// Which roles a host gets: common first, then the one its topology role names.
// The provisioner never branches on a host's name, only on its role and the topology.
import type { Context, Role } from '../runner.js'
import type { Role as RoleName } from '../topology.js'
import { backend } from './backend.js'
import { db } from './db.js'
import { gateway } from './gateway.js'
import { iotClient } from './iot-client.js'
import { monitor } from './monitor.js'
import { proxy } from './proxy.js'

/** What a role contributes besides its steps: rules and settings the base renders. */
export interface RoleModule {
  role: Role
  /** nftables input rules, one statement each, added to the baseline. */
  input?(ctx: Context): string[]
  forward?(ctx: Context): string[]
  /** nftables statements for a prerouting nat chain (DNAT). */
  nat?(ctx: Context): string[]
  sysctl?(ctx: Context): Record<string, string>
}

const modules: Record<RoleName, RoleModule> = {
  'iot-client': iotClient,
  gateway,
  proxy,
  backend,
  db,
  monitor,
}

export function roleModule(name: RoleName): RoleModule {
  const mod = modules[name]
  if (!mod) throw new Error(`no role module for role ${name}`)
  return mod
}

export async function rolesFor(name: RoleName): Promise<Role[]> {
  const { common } = await import('./common.js')
  return [common, roleModule(name).role]
}
