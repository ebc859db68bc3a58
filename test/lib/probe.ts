// Reachability probes, all at once. The lab's firewalls drop what they refuse (no
// reset, no ICMP error), so every refusal costs a probe its whole timeout: asked one
// after the other, a scenario of twenty refusals waited twenty timeouts (isolation.ts's
// management check took 37 s, twice the monitor's in monitoring.ts). Here each source
// host gets one command that runs its probes in the background and waits for them all,
// and the hosts are asked at the same time. The answers come back in the order asked,
// so a scenario asserts them one by one as before.
import type { Test } from 'tap'
import type { ExecResult } from '../../provision/ssh.js'

export interface Probe {
  /** The host (or group: its active member) the probe starts from. */
  from: string
  address: string
  /** A TCP port to open (nc -z); without one, a ping. */
  port?: number
}

type Sh = (host: string, command: string) => Promise<ExecResult>

/** The shell command for one probe, exiting 0 when it got through. */
export function probeCommand(p: Probe, timeoutS: number): string {
  return p.port === undefined
    ? `ping -c 2 -i 0.2 -W ${timeoutS} ${p.address}`
    : `nc -z -w ${timeoutS} ${p.address} ${p.port}`
}

/** One host's probes as one command: each in the background, its index and exit status printed. */
export function probeScript(probes: Probe[], timeoutS: number): string {
  const each = probes.map((p, i) => `( ${probeCommand(p, timeoutS)} >/dev/null 2>&1; echo "${i} $?" ) &`)
  return `${each.join('\n')}\nwait`
}

const describe = (p: Probe) => `${p.from} → ${p.address}${p.port === undefined ? ' (ping)' : `:${p.port}`}`

/** Whether each probe got through, in the order given. */
export async function reachable(sh: Sh, probes: Probe[], timeoutS = 2): Promise<boolean[]> {
  const result: (boolean | undefined)[] = probes.map(() => undefined)
  const byHost = new Map<string, number[]>()
  probes.forEach((p, i) => byHost.set(p.from, [...(byHost.get(p.from) ?? []), i]))
  await Promise.all(
    [...byHost].map(async ([host, indices]) => {
      const r = await sh(
        host,
        probeScript(
          indices.map((i) => probes[i]),
          timeoutS,
        ),
      )
      for (const line of r.stdout.split('\n')) {
        const m = /^(\d+) (\d+)$/.exec(line.trim())
        if (m && indices[Number(m[1])] !== undefined) result[indices[Number(m[1])]] = m[2] === '0'
      }
    }),
  )
  const unanswered = probes.filter((_, i) => result[i] === undefined)
  if (unanswered.length) throw new Error(`no answer for ${unanswered.map(describe).join(', ')}`)
  return result as boolean[]
}

export interface Expectation extends Probe {
  /** Whether it must get through (a control) or be refused. */
  open: boolean
  message: string
}

/** Probes all at once, then one assertion each, in the order given, each naming its probe. */
export async function assertReach(t: Test, sh: Sh, expected: Expectation[], timeoutS = 2) {
  const got = await reachable(sh, expected, timeoutS)
  expected.forEach((e, i) => {
    const message = `${e.message} [${describe(e)}]`
    if (e.open) t.ok(got[i], message)
    else t.notOk(got[i], message)
  })
}

/** A probe that must get through (a control). */
export const can = (from: string, address: string, port: number | undefined, message: string): Expectation => ({
  from,
  address,
  port,
  open: true,
  message,
})

/** A probe that must be refused. */
export const cannot = (from: string, address: string, port: number | undefined, message: string): Expectation => ({
  from,
  address,
  port,
  open: false,
  message,
})
