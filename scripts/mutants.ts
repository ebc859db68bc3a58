// npm run test:mutants: the mutants a review found surviving the unit suite, kept as
// patches (test/mutants/*.patch), each applied alone to a scratch copy of the tree; the
// unit test files its patch names ("Killed by:", a part of the unit suite) must fail on
// every one. A mutant they pass is a check missing:
// named here, and the command fails. (StrykerJS, npm run test:mutation, generates
// mutants of its own; these stay because it does not make all of them.)
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { repoRoot } from '../provision/paths.js'

const dir = path.join(repoRoot, 'test', 'mutants')
const only = process.argv.slice(2)
const patches = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.patch') && (only.length === 0 || only.some((o) => f.includes(o))))
  .sort()
if (patches.length === 0) throw new Error(`no patch in ${dir}${only.length ? ` matching ${only.join(', ')}` : ''}`)

/** A scratch copy of the tracked files (as they are in the work tree), node_modules linked. */
function scratch(): string {
  const to = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-mutant-'))
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: repoRoot })
    .toString()
    .split('\0')
    .filter((f) => f && fs.existsSync(path.join(repoRoot, f)))
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(to, f)), { recursive: true })
    fs.copyFileSync(path.join(repoRoot, f), path.join(to, f))
  }
  fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(to, 'node_modules'))
  return to
}

/**
 * Run these test files in the copy, each as its own process under tsx (a tap test file
 * runs alone and prints TAP), stopping at the first that fails; returns the exit code and
 * the first failed assertion. Not through the tap runner: its start-up was most of a
 * mutant's time (6 s against 2 s for test/unit/runner.ts), and the control below runs
 * the files the same way, so a file that needs the runner fails there first.
 */
function unit(copy: string, files: string[]) {
  let out = ''
  let status: number | null = 0
  // A folder (a patch that names none: the unit suite) stands for its test files.
  const each = files.flatMap((f) =>
    fs.statSync(path.join(copy, f)).isDirectory()
      ? fs
          .readdirSync(path.join(copy, f))
          .filter((n) => n.endsWith('.ts'))
          .sort()
          .map((n) => path.join(f, n))
      : [f],
  )
  for (const file of each) {
    const r = spawnSync(path.join(copy, 'node_modules', '.bin', 'tsx'), [file], {
      cwd: copy,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      // tap's own bound (package.json's tap.timeout): a mutant that hangs a test is killed.
      timeout: 900_000,
    })
    out += r.stdout + r.stderr
    status = r.status ?? 1
    if (status !== 0) break
  }
  const failed = out.split('\n').find((l) => /^\s+not ok \d+ - /.test(l) && !/^\s+not ok \d+ - test\//.test(l))
  return { status, failed: failed?.trim().replace(/^not ok \d+ - /, '') }
}
const killedBy = (p: string) =>
  /^Killed by: (.+)$/m.exec(fs.readFileSync(path.join(dir, p), 'utf8'))?.[1].split(/\s+/) ?? ['test/unit']

// Every patch still applies to the code as it is: one that no longer does (its code
// changed around it) is named with what to do, before anything runs.
const stale = patches.filter((p) => {
  try {
    execFileSync('git', ['apply', '--check', path.join(dir, p)], { cwd: repoRoot, stdio: 'pipe' })
    return false
  } catch (e) {
    console.error(
      `STALE     ${p}: ${String((e as { stderr?: Buffer }).stderr ?? e)
        .trim()
        .split('\n')
        .join('; ')}`,
    )
    return true
  }
})
if (stale.length) {
  console.error(
    `${stale.length} mutant patch(es) no longer apply: make the same change by hand on the current code, then write it back with its two header lines (git diff > the patch)`,
  )
  process.exit(1)
}

// The control: the same tests pass on the unmutated copy, else a "kill" proves nothing.
const files = [...new Set(patches.flatMap(killedBy))]
const control = scratch()
try {
  const c = unit(control, files)
  if (c.status !== 0)
    throw new Error(
      `the unit tests fail on an unmutated copy (${c.failed ?? `exit ${c.status}`}): fix that before judging mutants`,
    )
  console.log(`control   the unmutated copy passes ${files.join(' ')}`)
} finally {
  fs.rmSync(control, { recursive: true, force: true })
}

let survived = 0
for (const p of patches) {
  const copy = scratch()
  try {
    execFileSync('git', ['apply', path.join(dir, p)], { cwd: copy, stdio: 'pipe' })
    const t0 = Date.now()
    const r = unit(copy, killedBy(p))
    const secs = ((Date.now() - t0) / 1000).toFixed(0)
    if (r.status === 0) {
      survived++
      console.log(`SURVIVED  ${p} (${secs} s): ${killedBy(p).join(' ')} pass with it applied`)
    } else console.log(`killed    ${p} (${secs} s): ${r.failed ?? `exit ${r.status}`}`.slice(0, 200))
  } finally {
    fs.rmSync(copy, { recursive: true, force: true })
  }
}
console.log(`${patches.length - survived} of ${patches.length} mutants killed`)
process.exit(survived ? 1 : 0)
