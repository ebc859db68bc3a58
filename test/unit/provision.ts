import t from 'tap'
import { provision } from '../../provision/run.js'
import { failures, recapText, summarize } from '../../provision/report.js'
import { UnreachableError } from '../../provision/ssh.js'
import { FakeHost, tinyPlan } from '../lib/fake.js'
import { loadPlan } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'

// A host that answers every command with success and plausible output.
const answering = (name: string) =>
  new FakeHost(name, (cmd) => {
    if (cmd.startsWith('ip -j -4 addr')) {
      return {
        code: 0,
        stdout: `[{"ifname":"mgmt","addr_info":[{"family":"inet","local":"172.31.250.10","prefixlen":24}]}]\n[]\nlxc\n6.1\n`,
        stderr: '',
      }
    }
    return { code: 0, stdout: '', stderr: '' }
  })

t.test('a host that does not answer is named, and the others are still provisioned', async (t) => {
  const connected: string[] = []
  const recaps = await provision({
    plan: tinyPlan(),
    dryRun: true,
    repoRoot: '/nonexistent',
    stateDir: '/nonexistent',
    inventory: async () => ({
      entries: new Map([
        ['web', { name: 'web', hostName: '172.31.250.10', port: 22, user: 'vagrant', identityFile: '/k' }],
        ['app', { name: 'app', hostName: '172.31.250.11', port: 22, user: 'vagrant', identityFile: '/k' }],
      ]),
      missing: new Map([['sql', 'Vagrant has no SSH address for it (not created or not running)']]),
    }),
    connect: async (e) => {
      if (e.name === 'app') throw new UnreachableError('app', 'SSH to vagrant@172.31.250.11:22 failed (timed out)')
      connected.push(e.name)
      return answering(e.name)
    },
  })
  const by = new Map(recaps.map((r) => [r.host, r]))
  t.same(connected, ['web'])
  t.ok(by.get('web')!.steps.length > 5, 'host web ran its steps')
  t.notOk(by.get('web')!.unreachable)
  t.match(
    by.get('app')!.unreachable,
    /^host app does not answer: SSH to vagrant@172\.31\.250\.11:22 failed \(timed out\)\. Is it up\? Try `vagrant status app`/,
  )
  t.match(by.get('sql')!.unreachable, /not created or not running/)
  t.same(summarize(recaps).unreachable, 2)
  const text = recapText(recaps, true)
  t.match(text, /^app\s+UNREACHABLE\s+host app does not answer/m)
  t.match(text, /Done: 3 hosts, .* 2 unreachable/)
})

t.test('asking for a host the topology does not have is refused', async (t) => {
  await t.rejects(
    provision({ plan: tinyPlan(), only: ['zz'], repoRoot: '/', stateDir: '/' }),
    /unknown host zz: the topology has web, app, sql/,
  )
})

t.test("a group's name stands for its members (npm run provision -- hub)", async (t) => {
  const plan = loadPlan(topologyFile)
  const asked: string[][] = []
  await provision({
    plan,
    only: ['hub', 'gw-iot'],
    dryRun: true,
    repoRoot: '/nonexistent',
    stateDir: '/nonexistent',
    inventory: async (hosts) => {
      asked.push(hosts.map((h) => h.name))
      return { entries: new Map(), missing: new Map(hosts.map((h) => [h.name, 'not running'])) }
    },
  })
  t.same(asked, [['gw-iot', 'gw-cloud', 'gw-cloud-2']], "the hub pair's members, and the host named")
  await t.rejects(
    provision({ plan, only: ['hubb'], repoRoot: '/', stateDir: '/' }),
    /unknown host hubb: the topology has .* and the groups proxy, hub/,
  )
})

t.test('the recap names the slowest steps and handlers, over every host', async (t) => {
  const step = (name: string, ms: number) => ({ name, status: 'ok' as const, ms })
  const recaps = [
    {
      host: 'gw',
      roles: ['common', 'gateway'],
      steps: [step('packages', 120_000), step('fast', 10)],
      handlers: [{ name: 'restart strongswan', status: 'changed' as const, ms: 30_000 }],
    },
    { host: 'db', roles: ['common', 'db'], steps: [step('initdb', 6_000), step('quick', 4_999)], handlers: [] },
  ]
  t.match(
    recapText(recaps, false),
    /^Slowest: gw packages 120\.0 s; gw handler: restart strongswan 30\.0 s; db initdb 6\.0 s$/m,
    'longest first; under 5 s left out',
  )
  t.notMatch(
    recapText([{ host: 'x', roles: [], steps: [step('a', 100)], handlers: [] }], false),
    /Slowest/,
    'a fast run says nothing of it',
  )
})

t.test(
  'what failed is said, a line each, with its error: a caller that shows no recap (a test, CI) still says why',
  async (t) => {
    const recaps = [
      {
        host: 'db',
        roles: ['common', 'db'],
        steps: [
          { name: 'ok step', status: 'ok' as const, ms: 1 },
          {
            name: 'Ensure this member runs',
            status: 'failed' as const,
            error: 'timed out (Patroni says stopped)',
            ms: 9,
          },
        ],
        handlers: [{ name: 'reload patroni', status: 'failed' as const, error: 'exit 1', ms: 2 }],
      },
      { host: 'gw', roles: [], steps: [], handlers: [], unreachable: 'host gw does not answer' },
      { host: 'web', roles: [], steps: [{ name: 'fine', status: 'changed' as const, ms: 1 }], handlers: [] },
    ]
    t.same(failures(recaps), [
      'db: Ensure this member runs: timed out (Patroni says stopped)',
      'db: handler: reload patroni: exit 1',
      'gw: unreachable: host gw does not answer',
    ])
    t.same(failures([recaps[2]]), [], 'nothing failed, nothing said')
  },
)
