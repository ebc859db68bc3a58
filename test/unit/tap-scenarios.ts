// CI's reading of a TAP log: which lab scenarios ran, which skipped and why, what was
// left out by selection, how many assertions; and the comparison with the committed
// list, which fails on a scenario missing or one not on the list; what failed, with
// its assertions, for the tail of CI's log.
import t from 'tap'
import { compareScenarios, parseTap } from '../../scripts/lib/tap-scenarios.js'

const log = `> iot-cloud-vpn-lab@0.1.0 pretest
TAP version 14
1..3
# Subtest: test/lab/vpn.ts
    # Subtest: the SA uses the pinned algorithms
        ok 1 - site
        ok 2 - hub
        1..2
    ok 1 - the SA uses the pinned algorithms # time=12ms
    # left out: netem on VM gateways (needs VM gateways (kernel ESP, netem); this lab's are lxc)
    # Subtest: a refusal
        not ok 1 - refused
        1..1
    not ok 2 - a refusal # time=3ms
    ok 3 - the console page # SKIP no /usr/bin/chromium
    1..3
not ok 1 - test/lab/vpn.ts # time=20ms
# Subtest: test/lab/cloud-tls.ts
    1..0 # telemetry.cloud_tls is false
ok 2 - test/lab/cloud-tls.ts # SKIP telemetry.cloud_tls is false
# Subtest: test/unit/template.ts
    # Subtest: values
        ok 1 - x
        1..1
    ok 1 - values # time=1ms
    1..1
ok 3 - test/unit/template.ts # time=2ms
`

t.test('scenarios, skips with their reasons, what was left out, assertions per file', async (t) => {
  const run = parseTap(log)
  t.same(run.scenarios, [
    { file: 'test/lab/vpn.ts', name: 'the SA uses the pinned algorithms', ok: true },
    { file: 'test/lab/vpn.ts', name: 'a refusal', ok: false, failures: ['refused'] },
    { file: 'test/lab/vpn.ts', name: 'the console page', ok: true, skip: 'no /usr/bin/chromium' },
    { file: 'test/unit/template.ts', name: 'values', ok: true },
  ])
  t.same(run.fileSkips, [{ file: 'test/lab/cloud-tls.ts', reason: 'telemetry.cloud_tls is false' }])
  t.same(run.fileFailures, [], 'vpn.ts failed through a scenario, not outside one')
  t.same(run.leftOut, [
    "test/lab/vpn.ts: netem on VM gateways (needs VM gateways (kernel ESP, netem); this lab's are lxc)",
  ])
  t.same(
    run.assertions,
    { 'test/lab/vpn.ts': 3, 'test/unit/template.ts': 1 },
    "assertions under each file's scenarios (not the scenarios' own lines)",
  )
})

t.test(
  'against the committed list: a missing scenario, a skipped one, and one not on the list are each named',
  async (t) => {
    const run = parseTap(log)
    const list =
      '# comment\ntest/lab/vpn.ts: the SA uses the pinned algorithms\ntest/lab/vpn.ts: a refusal\ntest/lab/vpn.ts: the console page\ntest/lab/cloud-tls.ts: revocation\n'
    t.same(
      compareScenarios(list, run),
      {
        missing: ['test/lab/vpn.ts: the console page', 'test/lab/cloud-tls.ts: revocation'],
        unexpected: [],
      },
      'a skipped scenario and a file skipped whole count as missing',
    )
    t.same(
      compareScenarios('test/lab/vpn.ts: the SA uses the pinned algorithms\n', run),
      { missing: [], unexpected: ['test/lab/vpn.ts: a refusal'] },
      'a scenario that ran but is not listed is named',
    )
    t.same(
      compareScenarios(
        list.replace('test/lab/cloud-tls.ts: revocation\n', '').replace('test/lab/vpn.ts: the console page\n', ''),
        run,
      ),
      { missing: [], unexpected: [] },
      'control: the list of what ran matches',
    )
  },
)

// tap 21's own output (--reporter=tap) for a failed comparison, a failure in a nested
// subtest, a scenario that threw, and a file that died outside any scenario.
const failing = `TAP version 14
1..3
# Subtest: test/lab/db.ts
    # Subtest: scenario one
        ok 1 - fine
        not ok 2 - one is two
          ---
          compare: ===
          at:
            fileName: test/lab/db.ts
            lineNumber: 4
            columnNumber: 5
          diff: |
            --- expected
            +++ actual
            @@ -1,1 +1,1 @@
            -2
            +1
          ...
        
        # Subtest: nested
            not ok 1 - has x
              ---
              at:
                fileName: test/lab/db.ts
                lineNumber: 5
              ...
            
            1..1
        not ok 3 - nested # time=7.438ms
          ---
          at:
            fileName: test/lab/db.ts
            lineNumber: 5
          ...
        
        1..3
    not ok 1 - scenario one # time=25.226ms
      ---
      at:
        fileName: test/lab/db.ts
        lineNumber: 2
      ...
    
    # Subtest: scenario two throws
        not ok 1 - Patroni on database-1 never reported running: state starting
          ---
          stack: |
            Test.<anonymous> (test/lab/db.ts:8:9)
          at:
            fileName: test/lab/db.ts
            lineNumber: 8
          tapCaught: returnedPromiseRejection
          ...
        
        1..1
    not ok 2 - scenario two throws # time=4.248ms
    # Subtest: scenario three
        ok 1 - fine
        1..1
    ok 3 - scenario three # time=1ms
    1..3
not ok 1 - test/lab/db.ts # time=39.012ms
  ---
  exitCode: 1
  signal: null
  ...
/work/main/test/lib/lab.ts:237
    if (gaveUp) throw new Error(gaveUp)
                      ^


Error: database-1 failed 2 times in this test run, not tried again:
  in test/lab/idempotency.ts at 2026-12-07T13:23:29.331Z:
    database-1: Ensure this member runs: Patroni says state starting
    at openLab (/work/main/test/lib/lab.ts:237:13)
    at async <anonymous> (/work/main/test/lab/hosts.ts:13:13)

Node.js v20.20.2
# Subtest: test/lab/hosts.ts
    # timeout=3600000
    1..0 # no tests found
not ok 2 - test/lab/hosts.ts # time=5951.074ms
  ---
  exitCode: 1
  signal: null
  ...
# Subtest: test/lab/vpn.ts
    # Subtest: fine
        ok 1 - fine
        1..1
    ok 1 - fine # time=1ms
not ok 3 - test/lab/vpn.ts # time=900000ms
  ---
  exitCode: null
  signal: SIGTERM
  ...
`

t.test(
  'what failed: each failed assertion with its place and diff, and a file that died outside its scenarios',
  async (t) => {
    const run = parseTap(failing)
    t.same(
      run.scenarios.filter((s) => !s.ok),
      [
        {
          file: 'test/lab/db.ts',
          name: 'scenario one',
          ok: false,
          failures: ['one is two (test/lab/db.ts:4): (-wanted +found) -2 | +1', 'has x (test/lab/db.ts:5)'],
        },
        {
          file: 'test/lab/db.ts',
          name: 'scenario two throws',
          ok: false,
          failures: ['Patroni on database-1 never reported running: state starting (test/lab/db.ts:8)'],
        },
      ],
      "the nested subtest's own line is not a second failure; the passing scenario has none",
    )
    t.same(
      run.fileFailures,
      [
        'test/lab/hosts.ts: failed outside its scenarios (exit code 1, signal null): Error: database-1 failed 2 times in this test run, not tried again: | in test/lab/idempotency.ts at 2026-12-07T13:23:29.331Z: | database-1: Ensure this member runs: Patroni says state starting',
        'test/lab/vpn.ts: failed outside its scenarios (exit code null, signal SIGTERM); its own output is above, under "# Subtest: test/lab/vpn.ts"',
      ],
      "the error the process died of, printed before the file's own lines, without its stack; none for a file killed",
    )
    t.equal(run.assertions['test/lab/db.ts'], 6, 'every assertion line is still counted')
  },
)

t.test('an error printed without a stack takes no line of TAP for its message', async (t) => {
  const run = parseTap(`TAP version 14
1..1
# Subtest: test/lab/vpn.ts
Error: a warning some tool printed, with no stack
    # Subtest: fine
        ok 1 - one
        ok 2 - two
        1..2
    ok 1 - fine # time=1ms
    1..1
ok 1 - test/lab/vpn.ts # time=3ms
`)
  t.same(run.scenarios, [{ file: 'test/lab/vpn.ts', name: 'fine', ok: true }])
  t.equal(run.assertions['test/lab/vpn.ts'], 2, 'both assertions counted')
  t.same(run.fileFailures, [])
})
