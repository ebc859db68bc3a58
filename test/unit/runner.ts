import t from 'tap'
import { counts, runRoles, type Playbook, type Step } from '../../provision/runner.js'
import { FakeHost, fakeContext } from '../lib/fake.js'

/** A step whose state is a flag: changes it once, then is ok. */
function flagStep(name: string, state: { value: boolean }, notify?: string[]): Step {
  return {
    name,
    notify,
    async run(ctx) {
      if (state.value) return false
      if (!ctx.dryRun) state.value = true
      return true
    },
  }
}

t.test('changed on the first run, ok on the second; handlers run once at the end', async (t) => {
  const a = { value: false }
  const b = { value: false }
  const ran: string[] = []
  const role: Playbook = {
    name: 'r',
    steps: [flagStep('one', a, ['reload x']), flagStep('two', b, ['reload x', 'restart y'])],
    handlers: [
      {
        name: 'reload x',
        run: async () => {
          ran.push('reload x')
        },
      },
      {
        name: 'restart y',
        run: async () => {
          ran.push('restart y')
        },
      },
    ],
  }
  const first = await runRoles([role], fakeContext(new FakeHost()))
  t.same(
    first.steps.map((s) => s.status),
    ['changed', 'changed'],
  )
  t.same(ran, ['reload x', 'restart y'], 'each notified handler ran exactly once, after the steps')
  t.same(counts(first), { ok: 0, changed: 2, failed: 0 })

  ran.length = 0
  const second = await runRoles([role], fakeContext(new FakeHost()))
  t.same(
    second.steps.map((s) => s.status),
    ['ok', 'ok'],
    'a second run changes nothing',
  )
  t.same(ran, [], 'and notifies nothing')
  t.same(second.handlers, [])
})

t.test('a failed step ends the run, and handlers already notified still run', async (t) => {
  const ran: string[] = []
  const reached: string[] = []
  const role: Playbook = {
    name: 'r',
    steps: [
      flagStep('writes config', { value: false }, ['reload x']),
      {
        name: 'breaks',
        run: async () => {
          throw new Error('disk full')
        },
      },
      {
        name: 'never',
        run: async () => {
          reached.push('never')
          return false
        },
      },
    ],
    handlers: [
      {
        name: 'reload x',
        run: async () => {
          ran.push('reload x')
        },
      },
    ],
  }
  const recap = await runRoles([role], fakeContext(new FakeHost()))
  t.same(
    recap.steps.map((s) => [s.name, s.status]),
    [
      ['writes config', 'changed'],
      ['breaks', 'failed'],
    ],
  )
  t.equal(recap.steps[1].error, 'disk full')
  t.same(reached, [], 'no step runs after a failure')
  t.same(ran, ['reload x'], 'the changed config is applied anyway')
  t.equal(counts(recap).failed, 1)
})

t.test("a role's handlers run at its end, before the next role's steps", async (t) => {
  // The order a pair member needs: its service restarted with its new config before
  // keepalived (the last role) starts checking it.
  const order: string[] = []
  const step = (name: string, notify?: string[]): Step => ({
    name,
    notify,
    run: async () => {
      order.push(name)
      return true
    },
  })
  const handler = (name: string) => ({
    name,
    run: async () => {
      order.push(name)
    },
  })
  const service: Playbook = {
    name: 'service',
    steps: [step('writes config', ['restart service']), step('writes more', ['restart service'])],
    handlers: [handler('restart service')],
  }
  const vrrp: Playbook = {
    name: 'vrrp',
    steps: [step('starts keepalived', ['reload keepalived'])],
    handlers: [handler('reload keepalived')],
  }
  const recap = await runRoles([service, vrrp], fakeContext(new FakeHost()))
  t.same(order, ['writes config', 'writes more', 'restart service', 'starts keepalived', 'reload keepalived'])
  t.same(
    recap.handlers.map((h) => h.name),
    ['restart service', 'reload keepalived'],
    'each once',
  )
})

t.test("a failed handler ends the host's run: the next role would build on what it did not apply", async (t) => {
  const reached: string[] = []
  const first: Playbook = {
    name: 'service',
    steps: [flagStep('writes config', { value: false }, ['restart service'])],
    handlers: [
      {
        name: 'restart service',
        run: async () => {
          throw new Error('unit failed to start')
        },
      },
    ],
  }
  const next: Playbook = {
    name: 'vrrp',
    steps: [
      {
        name: 'starts keepalived',
        run: async () => {
          reached.push('starts keepalived')
          return true
        },
      },
    ],
  }
  const recap = await runRoles([first, next], fakeContext(new FakeHost()))
  t.same(reached, [], 'the next role did not run')
  t.same(
    recap.handlers.map((h) => [h.name, h.status, h.error]),
    [['restart service', 'failed', 'unit failed to start']],
  )
  t.equal(counts(recap).failed, 1)
})

t.test('a unit the role started has read its config: the reload notified before the start is moot', async (t) => {
  // keepalived started by the role, then reloaded a moment later: the reload raced its
  // first state change on an emulated VM, and the monitor never heard it (7 Dec 2026).
  const { service } = await import('../../provision/modules/service.js')
  const ran: string[] = []
  const role = (): Playbook => ({
    name: 'vrrp',
    steps: [
      flagStep('writes keepalived.conf', { value: false }, ['reload keepalived']),
      service('keepalived.service', { enabled: true, active: true, startMoots: ['reload keepalived'] }),
    ],
    handlers: [
      {
        name: 'reload keepalived',
        run: async () => {
          ran.push('reload keepalived')
        },
      },
    ],
  })
  // systemctl is-enabled, is-active, show NeedDaemonReload: as the fake host answers.
  const host = (active: string) =>
    new FakeHost('m', (cmd) => ({
      code: 0,
      stdout: cmd.startsWith('systemctl is-enabled') ? `enabled\n${active}\nno\n` : '',
      stderr: '',
    }))
  const started = host('inactive')
  const first = await runRoles([role()], fakeContext(started))
  t.ok(started.commands.includes('systemctl start keepalived.service'), 'the step started it')
  t.same(ran, [], 'and the reload was not run')
  t.same(
    first.steps.map((s) => s.status),
    ['changed', 'changed'],
  )
  const running = host('active')
  await runRoles([role()], fakeContext(running))
  t.same(ran, ['reload keepalived'], 'a unit already running gets its reload')
})

t.test('a bundled service the role started gets neither its reload nor its restart', async (t) => {
  // A backend's first provision: the TLS files and devices.json notify the reload, the
  // bundle and config.json the restart; the last step starts the unit. The reload, 90 ms
  // after the start, failed ("kill: Operation not permitted") and failed the host.
  const { serviceSteps } = await import('../../provision/roles/telemetry.js')
  const { steps, handlers } = serviceSteps({ service: 'ingest', description: 'test', files: [] })
  const start = steps.at(-1)!
  const host = new FakeHost('m', (cmd) => ({
    code: 0,
    stdout: cmd.startsWith('systemctl is-enabled') ? 'enabled\ninactive\nno\n' : '',
    stderr: '',
  }))
  const moots = await start.run(fakeContext(host))
  t.ok(host.commands.includes('systemctl start lab-ingest.service'), 'the last step starts the unit')
  t.same(moots, { moots: handlers.map((h) => h.name) }, 'and makes both of its handlers moot (reload, restart)')
})

t.test('a restart notified in the same flush makes a reload of the same unit moot, not of another', async (t) => {
  // The monitor's first provision (8 Dec 2026): prometheus.yml notified the reload, the
  // flags file the restart; the reload ran first and failed ("Job for prometheus.service
  // failed"), failing the host, though the restart after it would read both.
  const { unitHandler } = await import('../../provision/modules/service.js')
  const role = (notify: string[]): Playbook => ({
    name: 'monitor',
    steps: [flagStep('writes the config and the flags', { value: false }, notify)],
    handlers: [
      unitHandler('reload prometheus', 'reload', 'prometheus.service'),
      unitHandler('restart prometheus', 'restart', 'prometheus.service'),
      unitHandler('reload nginx', 'reload', 'nginx.service'),
    ],
  })
  const systemctl = (h: FakeHost) => h.commands.filter((c) => c.startsWith('systemctl'))
  const both = new FakeHost()
  const recap = await runRoles([role(['reload prometheus', 'restart prometheus', 'reload nginx'])], fakeContext(both))
  t.same(systemctl(both), ['systemctl restart prometheus.service', 'systemctl reload nginx.service'])
  t.same(
    recap.handlers.map((h) => h.name),
    ['restart prometheus', 'reload nginx'],
  )
  const alone = new FakeHost()
  await runRoles([role(['reload prometheus'])], fakeContext(alone))
  t.same(systemctl(alone), ['systemctl reload prometheus.service'], 'a reload alone still runs')
})

t.test('a failing handler is reported, not swallowed', async (t) => {
  const role: Playbook = {
    name: 'r',
    steps: [flagStep('s', { value: false }, ['h'])],
    handlers: [
      {
        name: 'h',
        run: async () => {
          throw new Error('reload refused')
        },
      },
    ],
  }
  const recap = await runRoles([role], fakeContext(new FakeHost()))
  t.same(
    recap.handlers.map((h) => [h.name, h.status, h.error]),
    [['h', 'failed', 'reload refused']],
  )
  t.equal(counts(recap).failed, 1)
})

t.test('dry-run: steps report what would change, change nothing, run no handler', async (t) => {
  const state = { value: false }
  let handled = false
  const role: Playbook = {
    name: 'r',
    steps: [flagStep('s', state, ['h'])],
    handlers: [
      {
        name: 'h',
        run: async () => {
          handled = true
        },
      },
    ],
  }
  const recap = await runRoles([role], fakeContext(new FakeHost(), true))
  t.equal(recap.steps[0].status, 'changed')
  t.equal(state.value, false, 'nothing was changed')
  t.equal(handled, false, 'no handler ran')
  t.same(
    recap.handlers.map((h) => h.name),
    ['h'],
    'but the recap says it would run',
  )
})

t.test('roles run in order: the base before the role', async (t) => {
  const order: string[] = []
  const mk = (n: string): Playbook => ({
    name: n,
    steps: [
      {
        name: n,
        run: async () => {
          order.push(n)
          return false
        },
      },
    ],
  })
  const recap = await runRoles([mk('common'), mk('proxy')], fakeContext(new FakeHost()))
  t.same(order, ['common', 'proxy'])
  t.same(recap.roles, ['common', 'proxy'])
})

t.test('a step notifying an unknown handler is a programming error, caught before anything runs', async (t) => {
  let ran = false
  const role: Playbook = {
    name: 'r',
    steps: [
      {
        name: 's',
        notify: ['nope'],
        run: async () => {
          ran = true
          return true
        },
      },
    ],
  }
  await t.rejects(runRoles([role], fakeContext(new FakeHost())), /step "s" notifies unknown handler "nope"/)
  t.equal(ran, false)
})

t.test(
  'a handler restarts or reloads a unit: its check first, daemon-reload when asked, the unit quoted when it must be',
  async (t) => {
    const { commandHandler, unitHandler } = await import('../../provision/modules/service.js')
    const cases: [ReturnType<typeof unitHandler>, string, string][] = [
      [
        unitHandler('reload ssh', 'reload', 'ssh', { check: 'sshd -t' }),
        'reload ssh',
        'sshd -t && systemctl reload ssh',
      ],
      [
        unitHandler('restart strongswan', 'restart', 'strongswan.service', { daemonReload: true }),
        'restart strongswan',
        `case "$(systemctl show -p NeedDaemonReload -p LoadState --value strongswan.service)" in *yes*|*not-found*) systemctl daemon-reload ;; esac && systemctl restart strongswan.service`,
      ],
      [unitHandler('restart it', 'restart', 'a unit; rm -rf /'), 'restart it', "systemctl restart 'a unit; rm -rf /'"],
      [commandHandler('reload nftables', 'nft -f /etc/nftables.conf'), 'reload nftables', 'nft -f /etc/nftables.conf'],
    ]
    for (const [h, name, command] of cases) {
      const host = new FakeHost()
      await h.run(fakeContext(host))
      t.same([h.name, host.commands], [name, [command]], name)
    }
  },
)

t.test("a handler's daemon-reload runs only when systemd has not read the unit's files as they are", async (t) => {
  const { daemonReloadIfStale } = await import('../../provision/modules/service.js')
  const { execFileSync } = await import('node:child_process')
  // systemctl stood in for by a shell function: `show` prints the unit's state as
  // systemd would (one value a line), anything else is recorded.
  const run = (state: string) =>
    execFileSync('bash', [
      '-c',
      `systemctl() { if [ "$1" = show ]; then printf '%s\\n' ${state}; else echo "systemctl $*"; fi; }\n${daemonReloadIfStale('lab-hub-watch.service')}`,
    ]).toString()
  t.equal(run('loaded no'), '', 'read as they are: no reload')
  t.equal(run('loaded yes'), 'systemctl daemon-reload\n', 'a file changed since: reload')
  t.equal(run('not-found no'), 'systemctl daemon-reload\n', 'a unit systemd has never read: reload')
})

t.test(
  'sh: each value one shell word, quoted where it must be; lists a word each; raw fragments as they are',
  async (t) => {
    const { raw, sh } = await import('../../provision/ssh.js')
    t.equal(sh`rm -f ${'/etc/lab/a.pem'}`, 'rm -f /etc/lab/a.pem', 'a plain path stays as it is')
    t.equal(sh`echo ${"it's; rm -rf /"}`, `echo 'it'\\''s; rm -rf /'`, 'a quote and a semicolon stay inside one word')
    t.equal(
      sh`sysctl -n ${['net.ipv4.ip_forward', 'a b']}`,
      `sysctl -n net.ipv4.ip_forward 'a b'`,
      'a list: one word each',
    )
    t.equal(
      sh`chmod ${600} ${'f'}${raw(' && echo done')}`,
      'chmod 600 f && echo done',
      'numbers as words; raw passes shell through',
    )
    t.equal(sh`test -e ${''}`, `test -e ''`, 'an empty value is still a word')
  },
)
