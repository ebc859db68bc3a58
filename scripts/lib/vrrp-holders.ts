// Who holds a group's virtual address now, asked of the members themselves (each
// `ip addr`), the one way the lab command, the bench and the tests find a pair's
// active member. Every member is asked at once and given a bound: a member stopped or
// frozen does not answer (its SSH connection hangs until keepalives give up), and does
// not hold the address for anyone else either.
import type { VrrpGroup } from '../../provision/plan.js'
import { vmAccel, type Provider } from '../../provision/providers.js'
import { runningProviders } from './providers.js'

/** Runs a command on a host and resolves with its output (whatever its exit code). */
export type Run = (host: string, command: string) => Promise<{ stdout: string }>

/**
 * How long these hosts may take to say whether they hold an address. An emulated VM
 * (libvirt without KVM, as Vagrant's state and this machine's processor say) takes 0.8
 * to 2.4 s for one command while its CPU is busy (measured 3 Dec 2026): one that
 * answers that slowly still answers. A container or a KVM guest answers in
 * milliseconds. A frozen member is given up after the bound either way.
 */
export function answerBoundMs(
  hosts: string[],
  providers: Map<string, Provider> = runningProviders(),
  accel: 'kvm' | 'tcg' = vmAccel().accel,
): number {
  return accel === 'tcg' && hosts.some((h) => providers.get(h) === 'libvirt') ? 15_000 : 3000
}

/** Whether the host holds the address now; one that does not answer within `boundMs` does not. */
export async function holdsAddress(
  run: Run,
  host: string,
  address: string,
  boundMs = answerBoundMs([host]),
): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const answer = await Promise.race([
    run(host, `ip -4 -o addr show to ${address}/32`).then(
      (r) => r.stdout.trim() !== '',
      () => false,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), boundMs))),
  ])
  clearTimeout(timer)
  return answer
}

/** The members holding the group's (first) virtual address now: one, in a healthy pair. */
export async function holdersOf(
  run: Run,
  group: VrrpGroup,
  boundMs = answerBoundMs(group.members.map((m) => m.host)),
): Promise<string[]> {
  const address = group.addresses[0].address
  const held = await Promise.all(
    group.members.map(async (m) => ((await holdsAddress(run, m.host, address, boundMs)) ? m.host : undefined)),
  )
  return held.filter((h): h is string => h !== undefined)
}
