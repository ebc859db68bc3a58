// The step runner: a host's roles are ordered lists of idempotent steps. Each step
// compares before it writes and reports ok (nothing to do) or changed; a step that
// throws is failed and ends the host's run. Handlers (reload, restart) that changed
// steps notified run once each at the end of the role (before the next role's steps),
// even when a later step failed, so a changed config is never left unapplied. In
// dry-run no step writes and no handler runs: changed means "would change".
import type { RemoteHost } from './ssh.js'
import type { Host, Plan } from './plan.js'
import type { Facts } from './facts.js'

export type Status = 'ok' | 'changed' | 'failed'

export interface Context {
  host: RemoteHost
  self: Host
  plan: Plan
  facts: Facts
  dryRun: boolean
  /** Secrets and generated material kept on the provisioning machine (.lab/). */
  stateDir: string
}

export interface Step {
  name: string
  /**
   * Returns true when it changed something (or, in dry-run, would have). A step that
   * started a unit returns the handlers that start made moot instead (changed as well):
   * the unit read the config they would apply, and a reload right after its start
   * raced what it was doing (keepalived lost its first state change).
   */
  run(ctx: Context): Promise<boolean | { moots: string[] }>
  /** Handlers to run at the end of the role when this step changed something. */
  notify?: string[]
}

export interface Handler {
  name: string
  run(ctx: Context): Promise<void>
  /** What it does to a systemd unit, if that is what it does: a restart makes a reload of the same unit moot. */
  unit?: { name: string; action: 'restart' | 'reload' }
}

/** What the runner plays on a host: a role's ordered steps and the handlers they notify (Ansible's role; the topology's Role is its name). */
export interface Playbook {
  name: string
  steps: Step[]
  handlers?: Handler[]
}

export interface Result {
  name: string
  status: Status
  error?: string
  ms: number
}

export interface HostRecap {
  host: string
  roles: string[]
  steps: Result[]
  handlers: Result[]
  /** Set when the host could not be reached at all. */
  unreachable?: string
}

export const counts = (r: HostRecap) => ({
  ok: r.steps.filter((s) => s.status === 'ok').length,
  changed: r.steps.filter((s) => s.status === 'changed').length,
  failed: r.steps.filter((s) => s.status === 'failed').length + r.handlers.filter((h) => h.status === 'failed').length,
})

export type Reporter = (host: string, kind: 'step' | 'handler', result: Result) => void

export async function runRoles(roles: Playbook[], ctx: Context, report: Reporter = () => {}): Promise<HostRecap> {
  const recap: HostRecap = { host: ctx.self.name, roles: roles.map((r) => r.name), steps: [], handlers: [] }
  const handlers = new Map<string, Handler>()
  for (const role of roles) for (const h of role.handlers ?? []) handlers.set(h.name, h)
  for (const role of roles) {
    for (const step of role.steps) {
      for (const n of step.notify ?? []) {
        if (!handlers.has(n)) throw new Error(`role ${role.name}, step "${step.name}" notifies unknown handler "${n}"`)
      }
    }
  }

  const notified = new Set<string>()
  /**
   * Runs the handlers notified so far, in the order they were declared, once each, and
   * forgets them. Called at the end of every role: a later role builds on the config an
   * earlier one applied (keepalived, last, checks a service that must already run with
   * its own; run at the very end, a restart of it took the member out of a pair that
   * had just elected it, a failover on every first provision).
   */
  const flush = async (): Promise<boolean> => {
    let ok = true
    // A unit restarted in this flush reads everything a reload of it would: the reload is
    // moot, and it raced the restart or the unit's own start (the monitor's first
    // provision, 8 Dec 2026: "reload prometheus" failed with "Job for prometheus.service
    // failed" just before the restart notified with it, and failed the host).
    const restarted = new Set(
      [...handlers.values()]
        .filter((h) => notified.has(h.name) && h.unit?.action === 'restart')
        .map((h) => h.unit!.name),
    )
    for (const [name, handler] of handlers) {
      if (!notified.has(name)) continue
      notified.delete(name)
      if (handler.unit?.action === 'reload' && restarted.has(handler.unit.name)) continue
      const t0 = Date.now()
      let result: Result
      if (ctx.dryRun) {
        result = { name, status: 'changed', ms: 0 }
      } else {
        try {
          await handler.run(ctx)
          result = { name, status: 'changed', ms: Date.now() - t0 }
        } catch (e) {
          result = { name, status: 'failed', error: (e as Error).message, ms: Date.now() - t0 }
          ok = false
        }
      }
      recap.handlers.push(result)
      report(ctx.self.name, 'handler', result)
    }
    return ok
  }

  for (const role of roles) {
    let failed = false
    for (const step of role.steps) {
      const t0 = Date.now()
      let result: Result
      try {
        const out = await step.run(ctx)
        result = { name: step.name, status: out !== false ? 'changed' : 'ok', ms: Date.now() - t0 }
        if (out !== false) for (const n of step.notify ?? []) notified.add(n)
        if (typeof out === 'object') for (const n of out.moots) notified.delete(n)
      } catch (e) {
        result = { name: step.name, status: 'failed', error: (e as Error).message, ms: Date.now() - t0 }
      }
      recap.steps.push(result)
      report(ctx.self.name, 'step', result)
      if (result.status === 'failed') {
        failed = true
        break
      }
    }
    // The role's changed config is applied even when one of its steps failed; a failed
    // step or handler ends the host's run there (the next role would build on it).
    if (!(await flush()) || failed) break
  }
  return recap
}
