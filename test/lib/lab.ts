// The lab, for scenario tests: brought up if it is not (so `npm test` on a fresh
// machine runs every lab test for real), one SSH connection per host, closed at the
// end. Where no lab can run here the file says skip with the reason; under CI
// (LAB_REQUIRED=1) that is a failure instead.
//
// What a scenario needs of the lab (lxc gateways, VM gateways, a monitor...) is said
// once, as `requires`: a case whose requirement this lab does not meet is left out by
// selection (a comment names it, no skip is recorded), and the committed lists of the
// scenarios each run must hold (test/expected/, checked by CI) catch one that was left
// out where it should have run. A whole file whose requirement is not met skips, and
// under LAB_REQUIRED fails: it was selected for this run.
import { execFile, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { gatherFacts, type Facts } from '../../provision/facts.js'
import { vagrantInventory } from '../../provision/inventory.js'
import { PROVISIONED, provision } from '../../provision/run.js'
import { failures } from '../../provision/report.js'
import { SshHost, type ExecOptions, type ExecResult, type RemoteHost } from '../../provision/ssh.js'
import { loadPlan, type Host, type Plan } from '../../provision/plan.js'
import { labUp } from '../../scripts/lib/lab.js'
import { repoRoot, stateDir, topologyFile } from '../../provision/paths.js'
import { ownerClone } from '../../scripts/lib/lxc.js'
import { knownContainers, machineStates } from '../../scripts/lib/vagrant.js'
import { holdersOf } from '../../scripts/lib/vrrp-holders.js'
import { providerOps, providerSummary, runningProviders } from '../../scripts/lib/providers.js'
import type { Provider } from '../../provision/providers.js'
import { waitFor } from '../../provision/lib/wait.js'
import { givenUp, recordFailures, recordedFailures, testRunId } from './provision-failures.js'

export { waitFor }

const execFileP = promisify(execFile)

/**
 * Run one of the project's CLIs (e.g. provision/cli.ts, scripts/pki.ts) as a user would,
 * optionally against another topology (env LAB_TOPOLOGY). Rejects on a non-zero exit,
 * with stdout and stderr on the error.
 */
export function labCli(script: string, args: string[] = [], env: Record<string, string> = {}) {
  return execFileP(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [script, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    maxBuffer: 64 << 20,
  })
}

/** What a scenario needs of the running lab. */
export interface Requires {
  /** The gateways' provider: 'lxc' (containers, userspace ESP) or 'vm' (kernel ESP). */
  gateways?: 'lxc' | 'vm'
  /** Containers can be added beside the lab (its hosts are lxc, or some are). */
  containers?: true
  /** The topology has a monitor host. */
  monitor?: true
  /** telemetry.cloud_tls is on. */
  cloudTls?: true
  /** At least this many backends. */
  backends?: number
  /** The lab's networks are bridges on this machine (not VirtualBox's internal networks). */
  bridgesHere?: true
  /** The topology has this role as a group (a pair behind a virtual address). */
  pair?: Host['role']
  /**
   * The scenario proves nothing about the gateways' data path (kernel or userspace ESP):
   * with VM gateways (npm run test:vm, after npm test ran it on containers) it would
   * repeat the container run at emulated speed, so it is left out there unless
   * LAB_VM_REPEATS=1.
   */
  sameOnVms?: true
}

/** Why this lab does not meet the requirement, or undefined when it does. */
export function unmet(lab: Pick<Lab, 'plan' | 'provider' | 'providerOf'>, r: Requires = {}): string | undefined {
  const gateways = lab.plan.hosts.filter((h) => h.role === 'gateway')
  const ops = (name: string) => {
    const p = lab.providerOf(name)
    return p ? providerOps(p) : undefined
  }
  const kinds = new Set(gateways.map((g) => (ops(g.name)?.ownKernel ? 'vm' : 'lxc')))
  if (r.gateways && (kinds.size !== 1 || !kinds.has(r.gateways)))
    return `needs ${r.gateways === 'lxc' ? 'lxc gateways (containers: userspace ESP)' : 'VM gateways (kernel ESP, netem)'}; this lab's are ${[...kinds].join(' and ')}`
  if (r.containers && lab.provider !== 'lxc' && lab.provider !== 'mixed')
    return `adds lxc containers beside the lab; this lab is all ${lab.provider}`
  if (r.monitor && !lab.plan.hosts.some((h) => h.role === 'monitor')) return 'the topology has no monitor host'
  if (r.cloudTls && !lab.plan.telemetry.cloudTls)
    return 'telemetry.cloud_tls is false in the topology: no TLS inside the cloud'
  if (r.backends && lab.plan.hosts.filter((h) => h.role === 'backend').length < r.backends)
    return `needs at least ${r.backends} backends`
  if (r.pair && !lab.plan.vrrp.some((g) => g.role === r.pair))
    return `the topology has no ${r.pair} pair (groups in topology.yaml; LAB_TOPOLOGY names ${process.env.LAB_TOPOLOGY ?? 'none'})`
  if (r.sameOnVms && kinds.has('vm') && process.env.LAB_VM_REPEATS !== '1')
    return 'does not depend on the gateways: npm test runs it with lxc gateways; LAB_VM_REPEATS=1 repeats it on VMs'
  if (r.bridgesHere && lab.plan.hosts.some((h) => ops(h.name)?.onLabBridges === false))
    return 'VirtualBox keeps its internal networks itself: no bridge here'
  return undefined
}

export interface Lab {
  plan: Plan
  /** The running lab's provider, from Vagrant's state: one provider, or 'mixed'. */
  provider: Provider | 'mixed' | 'none'
  /** Each host's provider, from Vagrant's state. */
  providerOf(name: string): Provider | undefined
  /** A host's SSH connection (a group's name is refused: which member is meant?). */
  host(name: string): RemoteHost
  /** A host's facts; a group's name gives its first member's (every member has the same networks and provider). */
  facts(name: string): Facts
  /**
   * Run on a host as root; returns the result whatever the exit code. A group's name
   * (the hub pair's, the proxy pair's) runs it on the member active now.
   */
  sh(name: string, command: string, options?: ExecOptions): Promise<ExecResult>
  /** The member of a group holding its virtual address now (see active). */
  activeMember(group: string): Promise<Host>
  /** A host's name as it is; a group's (the hub pair's): its member active now. */
  member(name: string): Promise<string>
  /** A host's name, or every member of a group (for what each member holds: keys, files). */
  membersOf(name: string): string[]
  byRole(role: Host['role']): Host[]
  /**
   * The host serving a role's service now: the member of its group holding the virtual
   * address (asked of each member), or the role's one host. Throws, naming them, when no
   * member or more than one holds it.
   */
  active(role: Host['role']): Promise<Host>
  /**
   * A scenario that needs something of the lab: registered as t.test where the lab meets
   * it, else left out with a comment that names it and why (no skip: see the header).
   */
  test(t: Test, name: string, requires: Requires, fn: (t: Test) => Promise<void>): void
  /** Drops every SSH connection now (a test about to destroy the hosts under them). */
  close(): Promise<void>
}

function unavailable(): string | undefined {
  if (process.env.LAB_SKIP) return `LAB_SKIP is set (${process.env.LAB_SKIP})`
  try {
    execFileSync('vagrant', ['--version'], { stdio: 'ignore' })
  } catch {
    return 'vagrant is not installed: run `npm run lab` once (as root) to install what the lab needs'
  }
  return undefined
}

/** How long a bring-up may take, apart from the file's own time (npm run lab's steps each bound themselves). */
const BRING_UP_MS = 60 * 60_000
/** The per-file timeout tap runs this file with (package.json's tap.timeout, in seconds). */
const fileTimeoutMs = () => Number(process.env.TAP_TIMEOUT || 900) * 1000

/**
 * Give this test file a new timeout from now: its own timer, and the runner's (which
 * reads a root-level "# timeout=MS" comment; no IPC channel when tap runs with stdio
 * inherited).
 */
function extendTimeout(t: Test, ms: number) {
  t.setTimeout(ms)
  t.comment(`timeout=${ms}`)
}

/** Where a lab that cannot serve this file is reported: a skip, or a failure in CI. */
function cannotRun(t: Test, why: string): undefined {
  if (process.env.LAB_REQUIRED) t.fail(`this scenario was selected for this run but cannot run: ${why}`)
  else t.plan(0, why)
  return undefined
}

export async function openLab(
  t: Test,
  opts: {
    requires?: Requires
    /**
     * false: hosts that run but are not provisioned are left so (the teardown's test needs
     * the lab there, not working: a host whose provisioning fails must not keep lab:down
     * from being tested, and the lab from going).
     */
    provision?: boolean
  } = {},
): Promise<Lab | undefined> {
  const why =
    unavailable() ??
    (process.getuid?.() !== 0 ? 'the lab needs root here (containers, VMs, bridges): run `sudo npm test`' : undefined)
  if (why) return cannotRun(t, `no lab: ${why}`)
  const plan = loadPlan(topologyFile)
  const states = await machineStates()
  const known = knownContainers()
  // A running lab is used with the providers it has, unless the user asked for others
  // (LAB_PROVIDER, LAB_VM_ROLES): then hosts on another provider are remade.
  const asked = !!(process.env.LAB_PROVIDER || process.env.LAB_VM_ROLES || process.env.VAGRANT_DEFAULT_PROVIDER)
  const running = runningProviders()
  const notRunning = plan.hosts
    .filter(
      (h) =>
        states.get(h.name) !== 'running' ||
        (asked && running.get(h.name) !== h.provider) ||
        (known.has(h.name) &&
          fs.existsSync(`/var/lib/lxc/${known.get(h.name)}/config`) &&
          ownerClone(known.get(h.name)!) !== repoRoot),
    )
    .map((h) => h.name)
  if (notRunning.length > 0) {
    t.comment(
      `bringing the lab up (${notRunning.join(', ')} not running, not on the provider asked for, or not this clone's): npm run lab`,
    )
    // A bring-up is not this file's test time: on a fresh machine VM gateways need the
    // VM box built and two emulated boots (about 15 minutes), over tap's 900 s per file.
    // The bring-up gets its own hour; the file's own budget starts again after it.
    extendTimeout(t, BRING_UP_MS)
    await labUp((m) => t.comment(m))
    extendTimeout(t, fileTimeoutMs())
  }
  const inventory = await vagrantInventory(plan.hosts, repoRoot)
  if (inventory.missing.size)
    throw new Error(`no SSH address for ${[...inventory.missing.keys()].join(', ')} even after bring-up`)
  const hosts = new Map<string, RemoteHost>()
  const facts = new Map<string, Facts>()
  const byName = new Map(plan.hosts.map((h) => [h.name, h]))
  await Promise.all(
    plan.hosts.map(async (h) => {
      const conn = await SshHost.connect(inventory.entries.get(h.name)!)
      hosts.set(h.name, conn)
      facts.set(h.name, await gatherFacts(conn, h))
    }),
  )
  const closeAll = async () => {
    for (const h of hosts.values()) await h.close()
  }
  t.teardown(closeAll)

  // Running but not (completely) provisioned, e.g. a bare `vagrant up` or a run that
  // stopped halfway: provision first.
  // Asked of every host at once: one after the other cost seconds per file on emulated VMs.
  const bare = (
    await Promise.all(
      [...hosts].map(async ([name, conn]) =>
        (await conn.exec(`test -f ${PROVISIONED}`, { check: false })).code !== 0 ? name : undefined,
      ),
    )
  ).filter((n): n is string => n !== undefined)
  if (bare.length && opts.provision !== false) {
    // A host whose provisioning already failed twice in this test run is not tried a
    // third time: each try can wait minutes (test/lib/provision-failures.ts says why).
    const record = path.join(stateDir, 'test-provision-failures.json')
    const run = testRunId()
    const gaveUp = givenUp(recordedFailures(record, run), bare)
    if (gaveUp) throw new Error(gaveUp)
    t.comment(`provisioning ${bare.join(', ')} (running but not provisioned)`)
    extendTimeout(t, BRING_UP_MS) // provisioning VMs under emulation takes minutes too
    const recaps = await provision({ plan, repoRoot, stateDir, only: bare })
    const failed = recaps
      .map((r) => ({ host: r.host, why: failures([r]) }))
      .filter((f) => f.why.length)
      .map((f) => ({ ...f, file: path.relative(repoRoot, process.argv[1] ?? ''), at: new Date().toISOString() }))
    // Why, in the test's own output: in CI nobody can run the provision again to see it.
    if (failed.length) {
      recordFailures(record, run, failed)
      throw new Error(`provisioning ${bare.join(', ')} failed:\n  ${failed.flatMap((f) => f.why).join('\n  ')}`)
    }
    extendTimeout(t, fileTimeoutMs())
  }

  const get = <T>(m: Map<string, T>, name: string) => {
    const v = m.get(name)
    if (!v) throw new Error(`no host ${name} in the topology`)
    return v
  }
  const providers = runningProviders()
  const groupNamed = (name: string) => plan.vrrp.find((g) => g.name === name)
  const firstMember = (name: string) => groupNamed(name)?.members[0].host ?? name
  const holder = async (group: (typeof plan.vrrp)[number]): Promise<Host> => {
    const holders = await holdersOf((h, c) => lab.sh(h, c), group)
    if (holders.length !== 1)
      throw new Error(
        `group ${group.name}: ${holders.length ? `${holders.join(' and ')} all hold` : 'no member that answers holds'} ${group.addresses[0].address}`,
      )
    return get(byName, holders[0])
  }
  const lab: Lab = {
    plan,
    provider: providerSummary(plan.hosts.map((h) => providers.get(h.name)).filter((p): p is Provider => !!p)),
    providerOf: (name) => providers.get(firstMember(name)),
    host: (name) => {
      if (groupNamed(name))
        throw new Error(`${name} is a group: ask lab.activeMember(${JSON.stringify(name)}) for its member`)
      return get(hosts, name)
    },
    facts: (name) => get(facts, firstMember(name)),
    sh: async (name, command, options) => {
      const group = groupNamed(name)
      const host = group ? (await holder(group)).name : name
      return get(hosts, host).exec(command, { check: false, ...options })
    },
    activeMember: async (name) => {
      const group = groupNamed(name)
      if (!group)
        throw new Error(
          `no group ${name} in the topology (groups: ${plan.vrrp.map((g) => g.name).join(', ') || 'none'})`,
        )
      return holder(group)
    },
    member: async (name) => {
      const group = groupNamed(name)
      return group ? (await holder(group)).name : name
    },
    membersOf: (name) => groupNamed(name)?.members.map((m) => m.host) ?? [name],
    byRole: (role) => plan.hosts.filter((h) => h.role === role),
    active: async (role) => {
      const group = plan.vrrp.find((g) => g.role === role)
      const [first] = plan.hosts.filter((h) => h.role === role)
      return group ? holder(group) : first
    },
    test: (t, name, requires, fn) => {
      const no = unmet(lab, requires)
      if (no) t.comment(`left out: ${name} (${no})`)
      else t.test(name, fn)
    },
    close: closeAll,
  }
  const fileNeeds = unmet(lab, opts.requires)
  if (fileNeeds) return cannotRun(t, fileNeeds)
  return lab
}
