// Which roles a host gets: common first, then the one its topology role names.
// The provisioner never branches on a host's name, only on its role and the topology.
import type { Role } from '../runner.js'
import type { Role as RoleName } from '../plan.js'
import { common } from './common.js'
import { roleModule } from './registry.js'

export function rolesFor(name: RoleName): Role[] {
  return [common, roleModule(name).role]
}
