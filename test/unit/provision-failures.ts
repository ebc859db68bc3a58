// A host whose provisioning failed twice in one test run is not tried again by later
// test files (each try can wait minutes): the record is per run, and says why.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import {
  givenUp,
  recordFailures,
  recordedFailures,
  testRunId,
  type FailedProvision,
} from '../lib/provision-failures.js'

const failure = (host: string, file: string): FailedProvision => ({
  host,
  file,
  at: '2026-12-07T13:00:00.000Z',
  why: [`${host}: Ensure this member runs in the cluster: Patroni says state starting, role replica`],
})

t.test('one failure gets another try; the second stops later files, naming both', async (t) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lab-')), 'failures.json')
  t.same(recordedFailures(file, 'run-1'), [], 'nothing recorded yet')
  recordFailures(file, 'run-1', [failure('database-1', 'test/lab/idempotency.ts')])
  t.equal(givenUp(recordedFailures(file, 'run-1'), ['database-1']), undefined, 'one failure: tried again')
  recordFailures(file, 'run-1', [failure('database-1', 'test/lab/isolation.ts')])
  const why = givenUp(recordedFailures(file, 'run-1'), ['database-1', 'backend-1'])
  t.match(why, /^database-1 failed 2 times in this test run, not tried again:/)
  t.match(why, /in test\/lab\/idempotency\.ts at 2026-12-07T13:00:00\.000Z:\n {4}database-1: Ensure this member runs/)
  t.match(why, /in test\/lab\/isolation\.ts/)
  t.notMatch(why, /backend-1/, 'a host that did not fail is not named')
  t.equal(givenUp(recordedFailures(file, 'run-1'), ['database-2']), undefined, 'another host is still tried')
})

t.test("another run's record counts for nothing, and is replaced", async (t) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lab-')), 'failures.json')
  recordFailures(file, 'run-1', [failure('database-1', 'a.ts'), failure('database-1', 'b.ts')])
  t.same(recordedFailures(file, 'run-2'), [], 'a later run starts clean')
  recordFailures(file, 'run-2', [failure('database-1', 'c.ts')])
  t.same(
    recordedFailures(file, 'run-2').map((f) => f.file),
    ['c.ts'],
    "the earlier run's failures are gone",
  )
  const fresh = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lab-')), 'not-made-yet', 'failures.json')
  recordFailures(fresh, 'run-3', [failure('backend-1', 'd.ts')])
  t.equal(
    recordedFailures(fresh, 'run-3').length,
    1,
    'recorded where no folder was yet (a clone whose .lab is not made)',
  )
  fs.writeFileSync(file, '{ not json')
  t.same(recordedFailures(file, 'run-2'), [], 'a damaged record is no record')
})

t.test("the run is tap's runner, by PID and start time", async (t) => {
  t.match(testRunId(process.pid), new RegExp(`^${process.pid}@\\d+$`))
  t.equal(testRunId(process.pid), testRunId(process.pid), 'the same process, the same run')
  t.equal(testRunId(process.ppid), testRunId(), 'by default the parent: the runner of every test file')
  t.equal(testRunId(2 ** 22 + 1), String(2 ** 22 + 1), 'a process that is gone: its PID alone')
})
