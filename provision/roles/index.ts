// Which roles a host gets: common first, then the one its topology role names; a
// member of a topology group gets keepalived last, once its service is there to check.
// The provisioner never branches on a host's name, only on its role and the topology.
import type { Playbook } from '../runner.js'
import { vrrpGroupOf, type Host, type Plan } from '../plan.js'
import { common } from './common.js'
import { roleModule } from './registry.js'
import { vrrpPlaybook } from './vrrp.js'

export function rolesFor(self: Host, plan: Plan): Playbook[] {
  const mod = roleModule(self.role)
  if (!vrrpGroupOf(plan, self.name)) return [common, mod.role]
  if (!mod.health) throw new Error(`role ${self.role} has no health check, so ${self.name} cannot be a group member`)
  return [common, mod.role, vrrpPlaybook((ctx) => mod.health!(ctx))]
}
