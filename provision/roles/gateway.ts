// Role gateway: a skeleton until its issue fills it in (the base comes from common).
// Its steps, firewall rules and kernel settings are declared here, as data.
import type { RoleModule } from './index.js'

export const gateway: RoleModule = {
  role: { name: 'gateway', steps: [] },
}
