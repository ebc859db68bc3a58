// A scripted RemoteHost and a Context around it, for testing the step runner.
import fs from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { topologyFile } from '../../provision/paths.js'
import { planOf, type Plan } from '../../provision/plan.js'
import type { Context } from '../../provision/runner.js'
import type { ExecResult, RemoteHost } from '../../provision/ssh.js'

export class FakeHost implements RemoteHost {
  readonly commands: string[] = []
  constructor(
    readonly name = 'fake',
    private answer: (cmd: string) => ExecResult = () => ({ code: 0, stdout: '', stderr: '' }),
  ) {}
  async exec(command: string): Promise<ExecResult> {
    this.commands.push(command)
    return this.answer(command)
  }
  async close(): Promise<void> {}
}

export const tinyPlan = () =>
  planOf({
    name: 'lab',
    networks: {
      mgmt: { kind: 'management', cidr: '172.31.250.0/24', host_address: '172.31.250.1' },
      cloud: { kind: 'lan', cidr: '10.20.0.0/24' },
    },
    hosts: {
      web: { role: 'proxy', interfaces: { mgmt: '172.31.250.10', cloud: '10.20.0.10' } },
      app: { role: 'backend', interfaces: { mgmt: '172.31.250.11', cloud: '10.20.0.11' } },
      sql: { role: 'db', interfaces: { mgmt: '172.31.250.12', cloud: '10.20.0.12' } },
    },
  })

export function fakeContext(host: RemoteHost, dryRun = false): Context {
  const plan = tinyPlan()
  return {
    host,
    plan,
    self: plan.hosts[0],
    dryRun,
    stateDir: '/nonexistent',
    facts: { addresses: [], mgmtInterface: 'mgmt', virtualization: 'lxc', kernel: 'test', interfaceOf: {} },
  }
}

/**
 * The lab's own topology.yaml, changed as data by `edit` (a host more, a field set),
 * then planned as any topology is: a test of a variant goes through the same resolve
 * stage as the lab, never through a hand-made copy of a plan.
 */
// eslint's no-explicit-any is off in test/: the raw YAML is untyped by nature.
export function planWith(edit: (raw: any) => void = () => {}): Plan {
  const raw = parseYaml(fs.readFileSync(topologyFile, 'utf8'))
  edit(raw)
  return planOf(raw, topologyFile)
}
