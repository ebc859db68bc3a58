// Provisioning that failed earlier in the same test run, remembered across test files.
// openLab provisions a host that is running but not provisioned; when that fails, each
// later file tried again and waited out the same failure (stop 36's CI: Patroni on
// database-1 never ran again, and 13 files in a row waited 240 s for it, until CI's 90
// minutes ran out). A host gets one more try in a later file (the first failure may
// have been a passing fault that a fresh run mends); after its second failure in the
// run, later files fail at once, naming both failures and their errors.
import fs from 'node:fs'
import path from 'node:path'

export interface FailedProvision {
  host: string
  /** The test file whose openLab tried. */
  file: string
  at: string
  /** What failed, a line per step or handler with its error (provision/report.ts, failures). */
  why: string[]
}

interface Recorded {
  run: string
  failed: FailedProvision[]
}

/** How many failed tries of a host in one run before later files stop trying. */
export const TRIES = 2

/**
 * This test run: tap's runner, the parent of every test file, by its PID and its start
 * time (a PID used again later is another run). Outside tap, this process's parent.
 */
export function testRunId(ppid = process.ppid): string {
  try {
    const stat = fs.readFileSync(`/proc/${ppid}/stat`, 'utf8')
    // Field 22, counted after the command name (which may hold spaces) in parentheses.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
    return `${ppid}@${start}`
  } catch {
    return String(ppid)
  }
}

/** The failures recorded in this run (none when the file is another run's, or absent). */
export function recordedFailures(file: string, run: string): FailedProvision[] {
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as Recorded
    return r.run === run && Array.isArray(r.failed) ? r.failed : []
  } catch {
    return []
  }
}

export function recordFailures(file: string, run: string, failed: FailedProvision[]) {
  const all = [...recordedFailures(file, run), ...failed]
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, JSON.stringify({ run, failed: all } satisfies Recorded, null, 2) + '\n')
}

/**
 * Why provisioning these hosts is not tried again in this run, or undefined: each host
 * that already failed TRIES times, with where and what failed.
 */
export function givenUp(failed: FailedProvision[], hosts: string[]): string | undefined {
  const lines = hosts.flatMap((h) => {
    const mine = failed.filter((f) => f.host === h)
    if (mine.length < TRIES) return []
    return [
      `${h} failed ${mine.length} times in this test run, not tried again:`,
      ...mine.flatMap((f) => [`  in ${f.file} at ${f.at}:`, ...f.why.map((w) => `    ${w}`)]),
    ]
  })
  return lines.length ? lines.join('\n') : undefined
}
