// What a TAP log (tap --reporter=tap) says ran: each test file's direct subtests (the
// scenarios), their results and skips with reasons, the assertions under them, and
// for a failed one what failed in it (CI keeps only the tail of its log, so the end of
// the run must say which assertion failed and why, not only how many did).
// Pure, so that CI's check (scripts/ci/scenarios.ts) is unit-tested.

export interface Scenario {
  file: string
  name: string
  ok: boolean
  skip?: string
  /** A failed scenario's failed assertions: name, place, and what was found against wanted. */
  failures?: string[]
}
export interface TapRun {
  scenarios: Scenario[]
  fileSkips: { file: string; reason: string }[]
  /** Files that failed with no failed scenario: a crash, an exit, a broken plan. */
  fileFailures: string[]
  assertions: Record<string, number>
  leftOut: string[]
}

const cleanName = (s: string) => s.replace(/ # (time=|SKIP|TODO).*$/, '').trim()
const clip = (s: string, n = 800) => (s.length > n ? `${s.slice(0, n - 1)}…` : s)

/** One failed assertion's line, from its name and its YAML block (indented under it). */
function describeFailure(name: string, yaml: string[]): string {
  const strip = Math.min(...yaml.filter((l) => l.trim()).map((l) => l.search(/\S/)))
  const lines = yaml.map((l) => l.slice(strip))
  const field = (key: string) => lines.find((l) => l.startsWith(`${key}: `))?.slice(key.length + 2)
  const block = (key: string) => {
    const at = lines.findIndex((l) => l.startsWith(`${key}: |`) || l === `${key}: >`)
    if (at < 0) return []
    const out: string[] = []
    for (const l of lines.slice(at + 1)) {
      if (l && !l.startsWith(' ')) break
      out.push(l.trim())
    }
    return out
  }
  const atFile = lines.find((l) => l.startsWith('  fileName: '))?.slice(12)
  const atLine = lines.find((l) => l.startsWith('  lineNumber: '))?.slice(14)
  const where = atFile ? ` (${atFile}${atLine ? `:${atLine}` : ''})` : ''
  const diff = block('diff').filter((l) => /^[-+][^-+]/.test(l) || l === '-' || l === '+')
  const found = field('found')
  const wanted = field('wanted')
  const detail = diff.length
    ? `: (-wanted +found) ${diff.slice(0, 6).join(' | ')}`
    : found !== undefined || wanted !== undefined
      ? `: found ${found ?? '?'}, wanted ${wanted ?? '?'}`
      : ''
  return clip(`${name}${where}${detail}`)
}

export function parseTap(text: string): TapRun {
  const run: TapRun = { scenarios: [], fileSkips: [], fileFailures: [], assertions: {}, leftOut: [] }
  let file = ''
  // The failed assertions seen since the last scenario line; the one being read (its
  // YAML block follows it, indented two more than its own line).
  let failures: string[] = []
  // The message of an error the file's process died of, when it printed one.
  let thrown: string[] = []
  let thrownOpen = false
  let open: { name: string; indent: number; yaml: string[]; inYaml: boolean } | undefined
  const close = () => {
    if (open) failures.push(describeFailure(open.name, open.yaml))
    open = undefined
  }
  const lines = text.split('\n')
  for (const [i, line] of lines.entries()) {
    if (open) {
      const indent = line.search(/\S/)
      if (!open.inYaml && line.trim() === '---' && indent === open.indent + 2) {
        open.inYaml = true
        continue
      }
      if (open.inYaml) {
        if (line.trim() === '...' && indent === open.indent + 2) close()
        else open.yaml.push(line)
        continue
      }
      close()
    }
    const top = /^# Subtest: (\S+\.ts)$/.exec(line)
    if (top) {
      file = top[1]
      failures = []
      continue
    }
    // An error that ended the file's process, as Node prints it on the file's stderr
    // (in the log when CI runs with 2>&1): its message lines, without the stack. Its
    // stderr may come before the file's "# Subtest:" line (tap prints that with the
    // file's buffered output): kept for the next file that fails outside its scenarios.
    if (/^([A-Z]\w*)?(Error|Exception)\b[^:]*: /.test(line)) {
      thrown = [line]
      thrownOpen = true
      continue
    }
    // The message ends at its stack, or at any line of TAP (never taken for a message).
    if (thrownOpen && (/^\s+at /.test(line) || /^\s*((not )?ok \d|# |1\.\.\d|---$|\.\.\.$)/.test(line)))
      thrownOpen = false
    if (thrownOpen && thrown.length < 12 && line.trim() && /^\s/.test(line)) {
      thrown.push(line.trim())
      continue
    }
    const fileEnd = /^(not )?ok \d+ - (\S+\.ts)(?: # SKIP ?(.*))?/.exec(line)
    if (fileEnd) {
      if (line.includes('# SKIP')) run.fileSkips.push({ file: fileEnd[2], reason: fileEnd[3] || '(no reason given)' })
      else if (fileEnd[1] && !run.scenarios.some((s) => s.file === fileEnd[2] && !s.ok)) {
        const yaml = lines.slice(i + 1, i + 40)
        const end = yaml.findIndex((l) => l.trim() === '...')
        const info = (end < 0 ? yaml : yaml.slice(0, end)).map((l) => l.trim())
        const get = (k: string) => info.find((l) => l.startsWith(`${k}: `))?.slice(k.length + 2)
        run.fileFailures.push(
          clip(
            `${fileEnd[2]}: failed outside its scenarios (exit code ${get('exitCode') ?? '?'}, signal ${get('signal') ?? '?'})${
              thrown.length ? `: ${thrown.join(' | ')}` : `; its own output is above, under "# Subtest: ${fileEnd[2]}"`
            }`,
            1600,
          ),
        )
      }
      file = ''
      thrown = []
      thrownOpen = false
      continue
    }
    if (!file) continue
    const left = /^ {4}# left out: (.*)$/.exec(line)
    if (left) {
      run.leftOut.push(`${file}: ${left[1]}`)
      continue
    }
    const sc = /^ {4}(not )?ok \d+ - (.*)$/.exec(line)
    if (sc) {
      const skip = / # SKIP ?(.*)$/.exec(sc[2])
      run.scenarios.push({
        file,
        name: cleanName(sc[2]),
        ok: !sc[1],
        ...(skip ? { skip: skip[1] || '(no reason given)' } : {}),
        ...(sc[1]
          ? { failures: failures.length ? failures : ['(no failed assertion under it: see its own output)'] }
          : {}),
      })
      failures = []
      continue
    }
    const assertion = /^( {8,})(not )?ok \d+ - (.*)$/.exec(line)
    if (assertion) {
      run.assertions[file] = (run.assertions[file] ?? 0) + 1
      // A failed subtest's own line carries its time; its failed assertions were
      // already taken from inside it.
      if (assertion[2] && !/ # time=/.test(assertion[3]))
        open = { name: cleanName(assertion[3]), indent: assertion[1].length, yaml: [], inYaml: false }
    }
  }
  close()
  return run
}

/** The scenarios a run must hold (one "file: name" a line; # comments), against what ran. */
export function compareScenarios(
  expected: string,
  run: TapRun,
  under: (file: string) => boolean = (f) => f.startsWith('test/lab/'),
) {
  const want = expected
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
  const ran = run.scenarios.filter((s) => under(s.file) && !s.skip).map((s) => `${s.file}: ${s.name}`)
  return {
    missing: want.filter((w) => !ran.includes(w)),
    unexpected: ran.filter((r) => !want.includes(r)),
  }
}
