// The one way the lab waits (the scenarios, and the operator commands that wait for a
// host): poll a probe until it answers, never a fixed sleep and hope.

/**
 * Poll probe until it returns a value that is not undefined/false (then return it), or
 * throw after the deadline with what was waited for and the last value seen. The one
 * way the scenarios wait: never a fixed sleep and hope.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  deadlineMs: number,
  everyMs = 250,
): Promise<T> {
  const end = Date.now() + deadlineMs
  let last: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false) return v
      last = v
    } catch (e) {
      last = e
    }
    if (Date.now() >= end)
      throw new Error(
        `timed out after ${(deadlineMs / 1000).toFixed(0)} s waiting for ${what}${last instanceof Error ? ` (last error: ${last.message})` : ''}`,
      )
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
