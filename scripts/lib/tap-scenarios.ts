// What a TAP log (tap --reporter=tap) says ran: each test file's direct subtests (the
// scenarios), their results and skips with reasons, and the assertions under them.
// Pure, so that CI's check (scripts/ci/scenarios.ts) is unit-tested.

export interface Scenario {
  file: string
  name: string
  ok: boolean
  skip?: string
}
export interface TapRun {
  scenarios: Scenario[]
  fileSkips: { file: string; reason: string }[]
  assertions: Record<string, number>
  leftOut: string[]
}

const cleanName = (s: string) => s.replace(/ # (time=|SKIP|TODO).*$/, '').trim()

export function parseTap(text: string): TapRun {
  const run: TapRun = { scenarios: [], fileSkips: [], assertions: {}, leftOut: [] }
  let file = ''
  for (const line of text.split('\n')) {
    const top = /^# Subtest: (\S+\.ts)$/.exec(line)
    if (top) {
      file = top[1]
      continue
    }
    const fileEnd = /^(not )?ok \d+ - (\S+\.ts)(?: # SKIP ?(.*))?/.exec(line)
    if (fileEnd) {
      if (line.includes('# SKIP')) run.fileSkips.push({ file: fileEnd[2], reason: fileEnd[3] || '(no reason given)' })
      file = ''
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
      })
      continue
    }
    if (/^ {8,}(not )?ok \d+/.test(line)) run.assertions[file] = (run.assertions[file] ?? 0) + 1
  }
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
