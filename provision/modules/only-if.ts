// A step that applies only when a plan-derived condition holds on this host (ok,
// nothing to do, otherwise): one role's steps for the variants the plan allows (a hub
// member or a site; a database cluster's member or a single database host).
import type { Context, Step } from '../runner.js'

export function onlyIf(cond: (ctx: Context) => boolean, step: Step): Step {
  return { ...step, run: async (ctx) => (cond(ctx) ? step.run(ctx) : false) }
}
