// The lab, for scenario tests: brought up if it is not (so `npm test` on a fresh
// machine runs every lab test for real), one SSH connection per host, closed at the
// end. Where no lab can run here the file says skip with the reason; under CI
// (LAB_REQUIRED=1) that is a failure instead.
import { execFile, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { gatherFacts, type Facts } from '../../provision/facts.js'
import { vagrantInventory } from '../../provision/inventory.js'
import { PROVISIONED, provision } from '../../provision/run.js'
import { summarize } from '../../provision/report.js'
import { SshHost, type ExecOptions, type ExecResult, type RemoteHost } from '../../provision/ssh.js'
import { loadTopology, type Host, type Topology } from '../../provision/topology.js'
import { labUp } from '../../scripts/lib/lab.js'
import { repoRoot, stateDir, topologyFile } from '../../scripts/lib/paths.js'
import { ownerClone } from '../../scripts/lib/lxc.js'
import { knownContainers, machineStates } from '../../scripts/lib/vagrant.js'
import { planProviders, providerSummary, runningProviders, type Provider } from '../../scripts/lib/providers.js'

const execFileP = promisify(execFile)

/**
 * Run one of the project's CLIs (e.g. provision/cli.ts, scripts/pki.ts) as a user would,
 * optionally against another topology (env LAB_TOPOLOGY). Rejects on a non-zero exit,
 * with stdout and stderr on the error.
 */
export function labCli(script: string, args: string[] = [], env: Record<string, string> = {}) {
  return execFileP(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [script, ...args], {
    cwd: repoRoot, env: { ...process.env, ...env }, maxBuffer: 64 << 20,
  })
}

export interface Lab {
  topology: Topology
  /** The running lab's provider, from Vagrant's state: one provider, or 'mixed'. */
  provider: Provider | 'mixed' | 'none'
  /** Each host's provider, from Vagrant's state. */
  providerOf(name: string): Provider | undefined
  host(name: string): RemoteHost
  facts(name: string): Facts
  /** Run on a host as root; returns the result whatever the exit code. */
  sh(name: string, command: string, options?: ExecOptions): Promise<ExecResult>
  byRole(role: Host['role']): Host[]
}

function unavailable(): string | undefined {
  if (process.env.LAB_SKIP) return `LAB_SKIP is set (${process.env.LAB_SKIP})`
  try { execFileSync('vagrant', ['--version'], { stdio: 'ignore' }) } catch { return 'vagrant is not installed: run `npm run lab` once (as root) to install what the lab needs' }
  return undefined
}

export async function openLab(t: Test): Promise<Lab | undefined> {
  const why = unavailable() ?? (process.getuid?.() !== 0 ? 'the lab needs root here (containers, VMs, bridges): run `sudo npm test`' : undefined)
  if (why) {
    if (process.env.LAB_REQUIRED) { t.fail(`the lab is required here but cannot run: ${why}`); return undefined }
    t.plan(0, `no lab: ${why}`)
    return undefined
  }
  const topology = loadTopology(topologyFile)
  const states = await machineStates()
  const known = knownContainers()
  // A running lab is used with the providers it has, unless the user asked for others
  // (LAB_PROVIDER, LAB_VM_ROLES): then hosts on another provider are remade.
  const asked = !!(process.env.LAB_PROVIDER || process.env.LAB_VM_ROLES || process.env.VAGRANT_DEFAULT_PROVIDER)
  const plan = planProviders(topology)
  const running = runningProviders()
  const notRunning = topology.hosts.filter((h) => states.get(h.name) !== 'running'
    || (asked && running.get(h.name) !== plan.providers[h.name])
    || (known.has(h.name) && fs.existsSync(`/var/lib/lxc/${known.get(h.name)}/config`) && ownerClone(known.get(h.name)!) !== repoRoot)).map((h) => h.name)
  if (notRunning.length > 0) {
    t.comment(`bringing the lab up (${notRunning.join(', ')} not running, not on the provider asked for, or not this clone's): npm run lab`)
    await labUp((m) => t.comment(m))
  }
  const inventory = await vagrantInventory(topology.hosts.map((h) => h.name), repoRoot)
  if (inventory.missing.size) throw new Error(`no SSH address for ${[...inventory.missing.keys()].join(', ')} even after bring-up`)
  const hosts = new Map<string, RemoteHost>()
  const facts = new Map<string, Facts>()
  await Promise.all(topology.hosts.map(async (h) => {
    const conn = await SshHost.connect(inventory.entries.get(h.name)!)
    hosts.set(h.name, conn)
    facts.set(h.name, await gatherFacts(conn, h))
  }))
  t.teardown(async () => { for (const h of hosts.values()) await h.close() })

  // Running but not (completely) provisioned, e.g. a bare `vagrant up` or a run that
  // stopped halfway: provision first.
  const bare = []
  for (const [name, conn] of hosts) if ((await conn.exec(`test -f ${PROVISIONED}`, { check: false })).code !== 0) bare.push(name)
  if (bare.length) {
    t.comment(`provisioning ${bare.join(', ')} (running but not provisioned)`)
    const s = summarize(await provision({ topology, repoRoot, stateDir, only: bare }))
    if (s.failed + s.unreachable) throw new Error(`provisioning ${bare.join(', ')} failed: run \`npm run provision\` to see why`)
  }

  const get = <T>(m: Map<string, T>, name: string) => {
    const v = m.get(name)
    if (!v) throw new Error(`no host ${name} in the topology`)
    return v
  }
  const providers = runningProviders()
  return {
    topology,
    provider: providerSummary(topology.hosts.map((h) => providers.get(h.name)).filter((p): p is Provider => !!p)),
    providerOf: (name) => providers.get(name),
    host: (name) => get(hosts, name),
    facts: (name) => get(facts, name),
    sh: (name, command, options) => get(hosts, name).exec(command, { check: false, ...options }),
    byRole: (role) => topology.hosts.filter((h) => h.role === role),
  }
}
