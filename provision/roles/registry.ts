// The role modules by topology role. The base (common.ts) reads the host's role
// module from here for its contributions (firewall rules, kernel settings); it is not
// in the registry itself, so the two never import each other.
import type { Role as RoleName } from '../plan.js'
import { backend } from './backend.js'
import { db } from './db.js'
import { gateway } from './gateway.js'
import { iotClient } from './iot-client.js'
import { monitor } from './monitor.js'
import { proxy } from './proxy.js'
import { siteFarm } from './site-farm.js'
import type { RoleModule } from './types.js'

const modules: Record<RoleName, RoleModule> = {
  'iot-client': iotClient,
  gateway,
  proxy,
  backend,
  db,
  monitor,
  'site-farm': siteFarm,
}

export function roleModule(name: RoleName): RoleModule {
  const mod = modules[name]
  if (!mod) throw new Error(`no role module for role ${name}`)
  return mod
}
