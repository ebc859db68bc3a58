// Which roles a host gets: common first, then the one its topology role names.
// The provisioner never branches on a host's name, only on its role and the topology.
import type { Playbook } from '../runner.js'
import type { Role } from '../plan.js'
import { common } from './common.js'
import { roleModule } from './registry.js'

export function rolesFor(name: Role): Playbook[] {
  return [common, roleModule(name).role]
}
