// CI's check of what ran: for each run (npm test, npm run test:vm), the lab scenarios
// in its TAP log against the committed list (test/expected/RUN.txt). A scenario
// missing (left out for a provider or topology reason, or a file that never ran) or
// one not on the list fails; so does any skip under LAB_REQUIRED. Prints each failed
// test case with its failed assertions, every skip with its reason, what was left out
// by selection, and the count of lab assertions.
//   tsx scripts/ci/scenarios.ts npm-test=LOG [test-vm=LOG]      check
//   tsx scripts/ci/scenarios.ts --write npm-test=LOG ...        rewrite the lists from logs
import fs from 'node:fs'
import path from 'node:path'
import { compareScenarios, parseTap } from '../lib/tap-scenarios.js'
import { repoRoot } from '../../provision/paths.js'

const args = process.argv.slice(2)
const write = args.includes('--write')
let failed = false
for (const arg of args.filter((a) => a !== '--write')) {
  const [run, log] = arg.split('=')
  if (!run || !log) throw new Error(`give RUN=LOG (e.g. npm-test=/tmp/npm-test.tap), got ${arg}`)
  const tap = parseTap(fs.readFileSync(log, 'utf8'))
  const list = path.join(repoRoot, 'test', 'expected', `${run}.txt`)
  const lab = tap.scenarios.filter((s) => s.file.startsWith('test/lab/'))
  const labAssertions = Object.entries(tap.assertions)
    .filter(([f]) => f.startsWith('test/lab/'))
    .reduce((n, [, c]) => n + c, 0)
  const allAssertions = Object.values(tap.assertions).reduce((n, c) => n + c, 0)
  console.log(
    `${run}: ${lab.length} lab scenarios, ${labAssertions} lab assertions (${allAssertions} in all, ${tap.scenarios.length} test cases)`,
  )
  const skips = [
    ...tap.fileSkips.map((s) => `${s.file} (whole file): ${s.reason}`),
    ...tap.scenarios.filter((s) => s.skip).map((s) => `${s.file}: ${s.name}: ${s.skip}`),
  ]
  // What failed, with its assertions: CI's log keeps only its tail, which this is.
  for (const s of tap.scenarios.filter((s) => !s.ok)) {
    console.log(`  FAILED: ${s.file}: ${s.name}`)
    for (const f of s.failures ?? []) console.log(`    - ${f}`)
  }
  for (const f of tap.fileFailures) console.log(`  FAILED: ${f}`)
  for (const s of skips) console.log(`  skip: ${s}`)
  for (const l of tap.leftOut) console.log(`  left out by selection: ${l}`)
  if (skips.length && process.env.LAB_REQUIRED) {
    console.log(`  FAIL: ${skips.length} skipped under LAB_REQUIRED: every selected check must run`)
    failed = true
  }
  if (write) {
    const header = `# The lab scenarios \`${run === 'npm-test' ? 'npm test' : `npm run ${run.replace('-', ':')}`}\` must run on the default topology (CI compares; scripts/ci/scenarios.ts --write remakes it from a TAP log).\n`
    fs.writeFileSync(
      list,
      header +
        lab
          .filter((s) => !s.skip)
          .map((s) => `${s.file}: ${s.name}`)
          .join('\n') +
        '\n',
    )
    console.log(`  wrote ${path.relative(repoRoot, list)}`)
    continue
  }
  if (!fs.existsSync(list)) {
    console.log(`  FAIL: no list ${path.relative(repoRoot, list)}`)
    failed = true
    continue
  }
  const { missing, unexpected } = compareScenarios(fs.readFileSync(list, 'utf8'), tap)
  for (const m of missing) console.log(`  FAIL: missing: ${m}`)
  for (const u of unexpected) console.log(`  FAIL: not on ${path.relative(repoRoot, list)}: ${u}`)
  if (missing.length || unexpected.length) failed = true
  else console.log(`  every expected scenario ran (${lab.length})`)
}
process.exit(failed ? 1 : 0)
