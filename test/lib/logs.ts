// A log read from a cursor taken before the scenario acts: only the lines it caused
// are judged, never the lab's history (an earlier run's refusals, a user's tests).
// Never a relative window (--since -20s) or a line count (journalctl -n): under load
// both reach lines of another scenario, or miss this one's.
import { waitFor, type Lab } from './lab.js'

export type LogReader = () => Promise<string>

/** A host's journal (one unit) or a log file, from this moment on. */
export async function logFrom(lab: Lab, host: string, what: { unit: string } | { file: string }): Promise<LogReader> {
  if ('unit' in what) {
    // The host's own clock, as journald stamps the entries with it: every line written
    // after this moment, and none before.
    const from = (await lab.sh(host, 'date +%s.%N')).stdout.trim()
    if (!/^\d+\.\d+$/.test(from)) throw new Error(`${host}: cannot read its clock to start a log cursor (${from})`)
    return async () => (await lab.sh(host, `journalctl -u ${what.unit} --since @${from} --no-pager -o cat`)).stdout
  }
  const lines = Number((await lab.sh(host, `wc -l < ${what.file}`)).stdout.trim())
  return async () => (await lab.sh(host, `tail -n +${lines + 1} ${what.file}`)).stdout
}

/** Wait until the log has a line matching re; returns the line, or '' at the deadline (the caller's assertion then fails). */
export async function logged(read: LogReader, re: RegExp, deadlineMs = 15_000): Promise<string> {
  return waitFor(
    `a log line matching ${re}`,
    async () => (await read()).split('\n').find((l) => re.test(l)),
    deadlineMs,
    500,
  ).catch(() => '')
}
