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
   * virtual addresses up, the command that says it answers (exit 0), and what to run
   * (in the background) when this member becomes the active one, if anything.
   */
  health?(ctx: Context): Health
}

/**
 * How keepalived learns that a member's service answers: a command it runs every
 * interval (exit 0: it answers), or a file the role keeps itself (0: it answers), which
 * keepalived watches and forks nothing for (the hub's, written by lab-hub-watch).
 */
export type Health = { service: string; takeover?: string } & ({ check: string } | { file: string })
