// What a person sees of a provisioning run: a line per step as it happens, then a
// recap per host and one summary line that says plainly whether anything changed.
import { counts, type HostRecap, type Reporter } from './runner.js'

const colour = process.stdout.isTTY && !process.env.NO_COLOR
const paint = (code: number, s: string) => (colour ? `\x1b[${code}m${s}\x1b[0m` : s)
const label = { ok: paint(32, 'ok'), changed: paint(33, 'changed'), failed: paint(31, 'failed') }

export function lineReporter(dryRun: boolean, verbose: boolean, out = console.log): Reporter {
  return (host, kind, r) => {
    if (!verbose && r.status === 'ok') return
    const what = kind === 'handler' ? `handler: ${r.name}` : r.name
    const status = r.status === 'changed' && dryRun ? paint(33, 'would change') : label[r.status]
    out(
      `${host.padEnd(12)} ${status.padEnd(colour ? 16 : 8)} ${what}${r.error ? `\n${' '.repeat(22)}${r.error.replace(/\n/g, `\n${' '.repeat(22)}`)}` : ''}`,
    )
  }
}

export interface Summary {
  hosts: number
  changed: number
  failed: number
  unreachable: number
}

export function summarize(recaps: HostRecap[]): Summary {
  return recaps.reduce(
    (s, r) => {
      const c = counts(r)
      return {
        hosts: s.hosts + 1,
        changed: s.changed + c.changed,
        failed: s.failed + c.failed,
        unreachable: s.unreachable + (r.unreachable ? 1 : 0),
      }
    },
    { hosts: 0, changed: 0, failed: 0, unreachable: 0 },
  )
}

/** A host's steps and handlers in one list, each handler named as such. */
const results = (r: HostRecap) => [...r.steps, ...r.handlers.map((h) => ({ ...h, name: `handler: ${h.name}` }))]

/**
 * What went wrong, a line per failed step or handler and per unreachable host, with its
 * error: what a caller that cannot show the whole run (a test, CI's log) must still say.
 */
export function failures(recaps: HostRecap[]): string[] {
  return recaps.flatMap((r) =>
    r.unreachable
      ? [`${r.host}: unreachable: ${r.unreachable}`]
      : results(r)
          .filter((x) => x.status === 'failed')
          .map((x) => `${r.host}: ${x.name}: ${x.error ?? 'failed'}`),
  )
}

export function recapText(recaps: HostRecap[], dryRun: boolean): string {
  const lines = [
    '',
    'RECAP',
    `${'host'.padEnd(12)} ${'role'.padEnd(11)} ${'ok'.padStart(4)} ${(dryRun ? 'would' : 'changed').padStart(8)} ${'failed'.padStart(7)}  handlers`,
  ]
  for (const r of [...recaps].sort((a, b) => a.host.localeCompare(b.host))) {
    if (r.unreachable) {
      lines.push(`${r.host.padEnd(12)} ${paint(31, 'UNREACHABLE')}  ${r.unreachable}`)
      continue
    }
    const c = counts(r)
    const handlers = r.handlers.map((h) => (h.status === 'failed' ? `${h.name} (failed)` : h.name)).join(', ') || '-'
    lines.push(
      `${r.host.padEnd(12)} ${(r.roles[1] ?? '-').padEnd(11)} ${String(c.ok).padStart(4)} ${String(c.changed).padStart(8)} ${String(c.failed).padStart(7)}  ${handlers}`,
    )
  }
  const slow = slowest(recaps)
  if (slow.length)
    lines.push('', `Slowest: ${slow.map((r) => `${r.host} ${r.name} ${(r.ms / 1000).toFixed(1)} s`).join('; ')}`)
  const s = summarize(recaps)
  const verdict =
    s.failed + s.unreachable > 0
      ? `${s.failed} failed, ${s.unreachable} unreachable`
      : s.changed === 0
        ? 'nothing to change'
        : dryRun
          ? `${s.changed} would change`
          : `${s.changed} changed`
  lines.push(
    '',
    `Done: ${s.hosts} hosts, ${s.changed} ${dryRun ? 'would change' : 'changed'}, ${s.failed} failed, ${s.unreachable} unreachable: ${verdict}`,
  )
  return lines.join('\n')
}

/**
 * The steps and handlers that took longest, over every host (as Ansible's profile_tasks
 * does): where a slow provision spends its time, e.g. on emulated VMs. Those of 5 s or
 * more, at most five.
 */
export function slowest(recaps: HostRecap[], n = 5, atLeastMs = 5000): { host: string; name: string; ms: number }[] {
  return recaps
    .flatMap((r) =>
      results(r).map((x) => ({
        host: r.host,
        name: x.name,
        ms: x.ms,
      })),
    )
    .filter((x) => x.ms >= atLeastMs)
    .sort((a, b) => b.ms - a.ms)
    .slice(0, n)
}
