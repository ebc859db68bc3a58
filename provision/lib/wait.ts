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
  opts: WaitOptions = {},
): Promise<T> {
  const begun = Date.now()
  const end = begun + deadlineMs
  let last: unknown
  for (;;) {
    const started = Date.now()
    try {
      const v = await probe()
      if (v !== undefined && v !== false) {
        trace(what, begun)
        return v
      }
      last = v
    } catch (e) {
      last = e
    }
    if (Date.now() >= end) {
      trace(`${what} (timed out)`, begun)
      throw new Error(
        `timed out after ${(deadlineMs / 1000).toFixed(0)} s waiting for ${what}${last instanceof Error ? ` (last error: ${last.message})` : ''}`,
      )
    }
    await new Promise((r) => setTimeout(r, pauseAfter(Date.now() - started, everyMs, opts.probeShare)))
  }
}

export interface WaitOptions {
  /**
   * At most this share of the time spent probing (0 to 1): after a probe that took d ms
   * the wait is d x (1/share - 1) when that is longer than everyMs. A probe that costs
   * the host it watches what it takes (an SSH session, sudo and swanctl on an emulated
   * VM: about half a second of its one vCPU) must not starve what it is waiting for.
   */
  probeShare?: number
}

/** The pause before the next probe: everyMs, or longer so that probing takes at most `share` of the time. */
export function pauseAfter(probeMs: number, everyMs: number, share?: number): number {
  if (share === undefined) return everyMs
  if (!(share > 0 && share <= 1)) throw new Error(`probeShare must be above 0 and at most 1, not ${share}`)
  return Math.max(everyMs, probeMs * (1 / share - 1))
}

/**
 * LAB_TRACE_WAITS=1: each wait's length on stderr, with the clock (where a scenario's
 * time goes, for the CI budget; off by default, as it is not what a run judges).
 */
function trace(what: string, begun: number): void {
  if (!process.env.LAB_TRACE_WAITS) return
  process.stderr.write(
    `${new Date().toISOString().slice(11, 19)} waited ${((Date.now() - begun) / 1000).toFixed(1)} s for ${what}\n`,
  )
}
