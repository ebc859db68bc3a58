// The lab's life cycle, as `npm run lab` and the tests drive it: up (everything a
// newcomer needs, in order, each step timed), down (leaves nothing behind), status.
import { spawn } from 'node:child_process'
import { vagrantInventory } from '../../provision/inventory.js'
import { provision } from '../../provision/run.js'
import { parseRawSas } from '../../services/lib/swanctl.js'
import { SshHost } from '../../provision/ssh.js'
import { recapText, summarize } from '../../provision/report.js'
import type { Reporter } from '../../provision/runner.js'
import { loadPlan, plannedProviders, type Plan } from '../../provision/plan.js'
import { forgetTopology, recordTopology, repoRoot, stateDir, topologyFile } from '../../provision/paths.js'
import type { Provider } from '../../provision/providers.js'
import { vagrantMachines } from '../../provision/vagrant-state.js'
import { existingBridges, networksDown, networksUp } from './network.js'
import type { Log, ProviderOps, Timed } from './provider-types.js'
import { ALL_PROVIDERS, hostsOf, providerOps, providerSummary, runningProviders } from './providers.js'
import { ensureRequirements } from './system.js'
import { machineStates } from './vagrant.js'
import { BRIDGE_TABLE, clearAllImpairments, impairmentTableExists, recorded } from './impair.js'
import { watch, watchText } from './watch.js'
import { forgetFaults, recordedFaults } from './host-faults.js'

export type { Log }

/** Run one long step with visible start and end, and its duration. */
export async function phase<T>(log: Log, title: string, fn: () => Promise<T>): Promise<T> {
  log(`==> ${title}`)
  const t0 = Date.now()
  const r = await fn()
  log(`    done in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return r
}

/** Text without the terminal's escape codes (colours, line redraws) Vagrant writes. */
const stripEscapes = (text: string) => text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')

export function vagrant(args: string[], log: Log, env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('vagrant', args, {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    })
    let tail = ''
    // Vagrant writes its error (the sentence that names the machine's state, the
    // provider's message) to stderr: kept whole, the stdout tail only as a fallback.
    let errors = ''
    const relay = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000)
      // Progress meters (box upload) redraw one line thousands of times: not a log.
      // Nor are the escape codes that redraw it (thousands of empty lines once stripped).
      for (const raw of chunk.toString().split(/[\n\r]/)) {
        const line = stripEscapes(raw)
        if (line.trim() && !/Progress: \d+%/.test(line)) log(`    | ${line}`)
      }
    }
    child.stdout.on('data', relay)
    child.stderr.on('data', (chunk: Buffer) => {
      errors = (errors + chunk.toString()).slice(-6000)
      relay(chunk)
    })
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new VagrantError(args, code, vagrantErrorText(errors, tail))),
    )
  })
}

/** A failed Vagrant command, with what Vagrant said of it. */
export class VagrantError extends Error {
  constructor(
    readonly args: string[],
    readonly code: number | null,
    readonly said: string,
  ) {
    super(`vagrant ${args.join(' ')} exited with ${code}:\n${said}`)
  }
}

/** Vagrant's own error text (stderr, up to 30 lines), else the output's last 8 lines. */
export function vagrantErrorText(stderr: string, tail: string): string {
  const lines = stripEscapes(stderr.trim() ? stderr : tail)
    .trim()
    .split('\n')
  return (stderr.trim() ? lines.slice(0, 30) : lines.slice(-8)).join('\n')
}

export interface UpResult {
  seconds: Record<string, number>
  provider: string
  changed: number
}

/**
 * What must exist before hosts of these providers can start: packages, the box,
 * libvirt's daemons and pool, the lab's networks. Idempotent; `vagrant up` runs it
 * through a trigger (the Vagrantfile), `npm run lab` before its own `vagrant up`.
 * Each provider module says what it needs (provider-*.ts); this says in which order.
 */
export async function prepare(providers: Provider[], log: Log = console.log, timed?: Timed): Promise<void> {
  const step: Timed = timed ?? ((_k, title, fn) => phase(log, title, fn))
  const plan = loadPlan(topologyFile)
  const inUse = (o: ProviderOps) => providers.includes(o.name)
  // Providers whose hosts live elsewhere (VirtualBox's own networks) need neither root nor bridges.
  for (const o of ALL_PROVIDERS.filter((x) => inUse(x) && !x.onLabBridges))
    await o.prepare({ plan, log, step, inUse: true })
  const bridged = ALL_PROVIDERS.filter((o) => inUse(o) && o.onLabBridges)
  if (bridged.length === 0) return
  if (process.getuid?.() !== 0) {
    const named = bridged.map((o) => o.name)
    throw new Error(
      `the ${named.join(' and ')} provider${named.length > 1 ? 's need' : ' needs'} root here (containers, VMs, bridges): run it again as root, e.g. \`sudo npm run lab\` or \`sudo vagrant up\``,
    )
  }
  // One list for every kind of host: they share most of their packages.
  const reqs = bridged.flatMap((o) => o.requirements).filter((r, i, all) => all.findIndex((x) => x.pkg === r.pkg) === i)
  await step('requirements', 'Checking this machine has what the lab needs', () => ensureRequirements(log, reqs))
  const libvirtMgmt = (await Promise.all(ALL_PROVIDERS.map((o) => o.ownsManagementNetwork(inUse(o))))).some(Boolean)
  for (const o of ALL_PROVIDERS.filter((x) => x.onLabBridges)) await o.prepare({ plan, log, step, inUse: inUse(o) })
  await step('networks', 'Creating the lab networks', () => networksUp(plan, log, { libvirtMgmt }))
}

/**
 * vagrant destroy -f (these hosts, or all), after each provider has cleared what Vagrant
 * would trip over (libvirt: its daemons must answer; a record whose VM is gone is dropped).
 * Containers in parallel: one after the other, twelve took about a minute of every
 * teardown (56 to 63 s; 21.6 s at once). VMs one at a time: vagrant-libvirt's parallel
 * actions race on the storage pool (vagrant-libvirt#850, #278), and one parallel destroy
 * of the three VM gateways here left two of them standing.
 */
async function destroy(names: string[], log: Log): Promise<void> {
  const chosen = vagrantMachines().filter((m) => names.length === 0 || names.includes(m.host))
  for (const o of ALL_PROVIDERS)
    await o.beforeDestroy?.(
      chosen.filter((m) => m.provider === o.name),
      log,
    )
  const left = vagrantMachines().filter((m) => names.length === 0 || names.includes(m.host))
  const hosts = [...new Set(left.map((m) => m.host))]
  const containers = hosts.filter((h) => left.every((m) => m.host !== h || m.provider === 'lxc'))
  const others = hosts.filter((h) => !containers.includes(h))
  if (containers.length) await vagrant(['destroy', '-f', '--parallel', ...containers], log)
  if (others.length) await vagrant(['destroy', '-f', '--no-parallel', ...others], log)
}

/**
 * `vagrant up` of one provider's hosts. Where it fails, the provider says what it knows
 * of them; where it names the failure as its plugin's own known miss, one more `vagrant
 * up` (Vagrant has destroyed the machine that failed; the others are left as they are),
 * said in the log: never a silent retry, and never a second.
 */
async function vagrantUp(plan: Plan, p: Provider, named: string[], hosts: string[], log: Log): Promise<void> {
  const up = () => vagrant(['up', `--provider=${p}`, ...named], log, { LAB_PREPARED: '1' })
  try {
    await up()
  } catch (e) {
    const ops = providerOps(p)
    if (!(e instanceof VagrantError) || !ops.upFailed) throw e
    if (!(await ops.upFailed(hosts, e.said, plan, log))) throw e
    log(`    vagrant up failed on what ${p} calls a known miss of its own (above): once more`)
    await up()
  }
}

export async function labUp(log: Log = console.log, opts: { provision?: boolean } = {}): Promise<UpResult> {
  const seconds: Record<string, number> = {}
  const timed: Timed = async (key, title, fn) => {
    const t0 = Date.now()
    const r = await phase(log, title, fn)
    seconds[key] = (seconds[key] ?? 0) + (Date.now() - t0) / 1000
    return r
  }
  const plan = loadPlan(topologyFile)
  // Before any host exists: a lab that comes up only in part is still this topology's.
  recordTopology(topologyFile)
  const planned = plannedProviders(plan)
  const providers = [...new Set(Object.values(planned))]
  log(
    `Lab "${plan.name}": ${plan.hosts.length} hosts on ${plan.networks.length} networks, provider ${providerSummary(providers)} (${plan.providerReason})`,
  )
  // A host that exists with another provider than planned is remade.
  const moved = [...runningProviders()].filter(([h, p]) => planned[h] && planned[h] !== p).map(([h]) => h)
  if (moved.length)
    await timed('vagrant_destroy', `vagrant destroy -f ${moved.join(' ')} (they change provider)`, () =>
      destroy(moved, log),
    )
  await prepare(providers, log, timed)
  // VMs first, in parallel (libvirt's way); then the containers. The trigger in the
  // Vagrantfile need not prepare again.
  for (const p of ALL_PROVIDERS.map((o) => o.name).filter((x) => providers.includes(x))) {
    const hosts = hostsOf(planned, p)
    const all = hosts.length === plan.hosts.length
    await timed('vagrant_up', `vagrant up --provider=${p}${all ? '' : ` ${hosts.join(' ')}`}`, async () => {
      await vagrantUp(plan, p, all ? [] : hosts, hosts, log)
      await providerOps(p).afterUp?.(
        vagrantMachines().filter((m) => m.provider === p && hosts.includes(m.host)),
        plan,
        log,
      )
    })
  }
  let changed = 0
  if (opts.provision !== false) {
    const failures: Reporter = (host, kind, r) => {
      if (r.status === 'failed') log(`    ${host}: ${kind} "${r.name}" failed: ${r.error}`)
    }
    const recaps = await timed('provision', 'Provisioning every host', () =>
      provision({ plan, repoRoot, stateDir, report: failures }),
    )
    log(recapText(recaps, false))
    const s = summarize(recaps)
    if (s.failed + s.unreachable > 0)
      throw new Error(
        `provisioning failed on ${s.failed + s.unreachable} host(s): see the recap above, fix, then \`npm run provision\``,
      )
    changed = s.changed
  }
  log(await statusText(plan))
  return { seconds, provider: providerSummary(providers), changed }
}

export async function labDown(log: Log = console.log): Promise<void> {
  const plan = loadPlan(topologyFile)
  await phase(log, 'vagrant destroy -f', () => destroy([], log))
  if (process.getuid?.() === 0) {
    await phase(log, "Removing the lab's containers, VMs, networks and leftovers", async () => {
      // Every provider's, used now or not: an earlier lab may have had others.
      for (const o of ALL_PROVIDERS) await o.cleanup(plan, log)
      await clearAllImpairments(log)
      forgetFaults()
      await networksDown(plan, log)
      for (const o of ALL_PROVIDERS) await o.release?.(log)
    })
  }
  const remaining = await labRemnants(plan)
  if (remaining.length) throw new Error(`the lab left behind:\n  ${remaining.join('\n  ')}`)
  forgetTopology()
  log('Nothing of the lab is left on this machine.')
}

/** Everything of the lab still on this machine (empty after `lab down`). */
export async function labRemnants(t: Plan): Promise<string[]> {
  return [
    ...(await Promise.all(ALL_PROVIDERS.map((o) => o.remnants(t)))).flat(),
    ...existingBridges(t).map((b) => `bridge ${b}`),
    ...((await impairmentTableExists()) ? [`nftables table bridge ${BRIDGE_TABLE} (link impairments)`] : []),
  ]
}

/** Each gateway's IPsec data path and its tunnels' state, read over SSH. */
async function ipsecStatus(plan: Plan, states: Map<string, string>): Promise<Map<string, string>> {
  const gateways = plan.hosts.filter((h) => h.role === 'gateway' && states.get(h.name) === 'running')
  const out = new Map<string, string>()
  if (gateways.length === 0) return out
  const inv = await vagrantInventory(gateways, repoRoot)
  await Promise.all(
    gateways.map(async (g) => {
      const entry = inv.entries.get(g.name)
      if (!entry) return
      try {
        const host = await SshHost.connect(entry, 10_000)
        try {
          const r = await host.exec('cat /etc/lab/ipsec-mode 2>/dev/null; swanctl --list-sas --raw 2>/dev/null', {
            check: false,
          })
          const [mode, ...sas] = r.stdout.split('\n')
          const tunnels = parseRawSas(sas.join('\n')).map(
            (s) => `${s.name} ${s.state}${s.children[0] ? `/${s.children[0].state}` : ''}`,
          )
          out.set(g.name, `${mode.trim() || 'not provisioned'}; ${tunnels.join(', ') || 'no tunnel'}`)
        } finally {
          await host.close()
        }
      } catch (e) {
        out.set(g.name, `unknown (${(e as Error).message.split(':')[0]})`)
      }
    }),
  )
  return out
}

export async function statusText(plan: Plan): Promise<string> {
  const states = await machineStates()
  const ipsec = await ipsecStatus(plan, states)
  const providers = runningProviders()
  const providerCell = (p: Provider | undefined) => (p ? providerOps(p).label() : '-')
  const rows = plan.hosts.map((h) => [
    h.name,
    h.role,
    providerCell(providers.get(h.name)),
    states.get(h.name) ?? 'unknown',
    h.mgmt.address,
    h.interfaces
      .slice(1)
      .map((i) => `${i.network} ${i.address}/${i.prefix}`)
      .join(', '),
    ipsec.get(h.name) ?? '',
  ])
  const head = ['host', 'role', 'provider', 'state', 'management', 'lab addresses', 'IPsec (data path; tunnels)']
  const widths = head.map((_, i) => Math.max(head[i].length, ...rows.map((r) => r[i].length)))
  const fmt = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd()
  const running = [...states.values()].some((s) => s === 'running')
  const impaired = recorded()
  const impairments = impaired.length
    ? `\nLink impairments (npm run lab:impair -- LINK --clear): ${impaired.map((i) => `${i.link} ${i.loss}% loss${i.delayMs ? ` ${i.delayMs} ms delay` : ''}`).join(', ')}`
    : ''
  const faulted = recordedFaults()
  const faults = faulted.length
    ? `\nHost faults (npm run lab:fault -- HOST --clear): ${faulted.map((f) => `${f.host} ${f.fault} since ${f.since}`).join(', ')}`
    : ''
  return (
    ['', fmt(head), ...rows.map(fmt)].join('\n') + impairments + faults + (running ? watchText(await watch(plan)) : '')
  )
}
