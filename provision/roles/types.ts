// What a role module is: the registry (registry.ts) and every role module use this
// type, so neither imports the other for it.
import type { Context, Playbook } from '../runner.js'

/** What a role contributes besides its steps: rules and settings the base renders. */
export interface RoleModule {
  role: Playbook
  /** nftables input rules, one statement each, added to the baseline. */
  input?(ctx: Context): string[]
  forward?(ctx: Context): string[]
  /** nftables statements for a prerouting nat chain (DNAT). */
  nat?(ctx: Context): string[]
  sysctl?(ctx: Context): Record<string, string>
  /**
   * For a member of a group (keepalived, vrrp.ts): the service whose failure gives the
   * virtual addresses up, and the command that says it answers (exit 0).
   */
  health?(ctx: Context): { service: string; check: string }
}
