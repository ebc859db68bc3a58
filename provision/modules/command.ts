// A step from a check and a fix: for state that is not a file (hostname, timezone,
// live kernel settings). The check returns true when the host is already right.
import type { Context, Step } from '../runner.js'

export function converge(
  name: string,
  check: (ctx: Context) => Promise<boolean>,
  fix: (ctx: Context) => Promise<void>,
  notify?: string[],
): Step {
  return {
    name,
    notify,
    async run(ctx) {
      if (await check(ctx)) return false
      if (!ctx.dryRun) {
        await fix(ctx)
        if (!(await check(ctx))) throw new Error(`${name}: still not right after the fix`)
      }
      return true
    },
  }
}
