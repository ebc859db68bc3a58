// The lab's life cycle, as `npm run lab` and the tests drive it: up (everything a
// newcomer needs, in order, each step timed), down (leaves nothing behind), status.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { vagrantInventory } from '../../provision/inventory.js'
import { provision } from '../../provision/run.js'
import { parseRawSas } from '../../services/lib/swanctl.js'
import { SshHost } from '../../provision/ssh.js'
import { recapText, summarize } from '../../provision/report.js'
import type { Reporter } from '../../provision/runner.js'
import { loadPlan, managementNetwork, plannedProviders, type Plan } from '../../provision/plan.js'
import { boxName, ensureBox, installedBoxes } from './box.js'
import {
  domainExists,
  ensureLibvirtDaemons,
  ensureStoragePool,
  labDomains,
  libvirtAvailable,
  removeStaleDomains,
  labVolumes,
  mgmtNetworkDefined,
  mgmtNetworkName,
  removeLabDomains,
  removeLabVolumes,
  removeMgmtNetwork,
  runningLabDaemons,
  stopLabDaemons,
} from './libvirt.js'
import { vmAccel } from '../../provision/providers.js'
import { labContainers, leftovers, removeLeftovers, removeStaleContainers } from './lxc.js'
import { existingBridges, networksDown, networksUp } from './network.js'
import { repoRoot, stateDir, topologyFile } from '../../provision/paths.js'
import { hostsOf, providerSummary, runningProviders } from './providers.js'
import type { Provider } from '../../provision/providers.js'
import { ensureRequirements, LIBVIRT_REQUIREMENTS, LXC_REQUIREMENTS } from './system.js'
import { knownMachines, machineStates } from './vagrant.js'
import { ensureVmBox } from './vm-box.js'
import { BRIDGE_TABLE, clearAllImpairments, impairmentTableExists, recorded } from './impair.js'
import { watch, watchText } from './watch.js'

export type Log = (m: string) => void

/** Run one long step with visible start and end, and its duration. */
export async function phase<T>(log: Log, title: string, fn: () => Promise<T>): Promise<T> {
  log(`==> ${title}`)
  const t0 = Date.now()
  const r = await fn()
  log(`    done in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return r
}

export function vagrant(args: string[], log: Log, env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('vagrant', args, {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    })
    let tail = ''
    const relay = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000)
      // Progress meters (box upload) redraw one line thousands of times: not a log.
      for (const line of chunk.toString().split(/[\n\r]/))
        if (line.trim() && !/Progress: \d+%/.test(line)) log(`    | ${line.replace(/\x1b\[K/g, '')}`)
    }
    child.stdout.on('data', relay)
    child.stderr.on('data', relay)
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(
            new Error(
              `vagrant ${args.join(' ')} exited with ${code}:\n${tail.trim().split('\n').slice(-8).join('\n')}`,
            ),
          ),
    )
  })
}

export interface UpResult {
  seconds: Record<string, number>
  provider: string
  changed: number
}

type Timed = <T>(key: string, title: string, fn: () => Promise<T>) => Promise<T>

/**
 * What must exist before hosts of these providers can start: packages, the box,
 * libvirt's daemons and pool, the lab's networks. Idempotent; `vagrant up` runs it
 * through a trigger (the Vagrantfile), `npm run lab` before its own `vagrant up`.
 */
export async function prepare(providers: Provider[], log: Log = console.log, timed?: Timed): Promise<void> {
  const step: Timed = timed ?? ((_k, title, fn) => phase(log, title, fn))
  const plan = loadPlan(topologyFile)
  const want = new Set(providers)
  if (want.has('virtualbox')) {
    // VirtualBox brings its own internal networks; its box is not built here, and
    // Vagrant would try to download it: say so instead of trying.
    const box = process.env.LAB_VM_BOX || 'debian/bookworm64'
    if (!(await installedBoxes()).includes(box)) {
      throw new Error(
        `the virtualbox provider needs the box ${box}, which is not on this machine and is not built by the lab (only the lxc and libvirt boxes are): add it with \`vagrant box add ${box}\` where it can be downloaded, or set LAB_VM_BOX to a VirtualBox box you have`,
      )
    }
    if (want.size === 1) return
  }
  if (process.getuid?.() !== 0) {
    const named = [...want].filter((p) => p !== 'virtualbox')
    throw new Error(
      `the ${named.join(' and ')} provider${named.length > 1 ? 's need' : ' needs'} root here (containers, VMs, bridges): run it again as root, e.g. \`sudo npm run lab\` or \`sudo vagrant up\``,
    )
  }
  const vms = want.has('libvirt')
  // One list for both kinds of host: the two share most of their packages.
  const reqs = [...(want.has('lxc') ? LXC_REQUIREMENTS : []), ...(vms ? LIBVIRT_REQUIREMENTS : [])].filter(
    (r, i, all) => all.findIndex((x) => x.pkg === r.pkg) === i,
  )
  await step('requirements', 'Checking this machine has what the lab needs', () => ensureRequirements(log, reqs))
  // Wherever libvirt is installed the management bridge is libvirt's network (its
  // DHCP gives VMs their addresses), so VMs can join a lab of containers later
  // without the bridge being remade under them.
  const libvirtMgmt = vms || (await libvirtAvailable())
  if (libvirtMgmt) {
    const accel = vmAccel()
    log(`VMs run with ${accel.accel === 'kvm' ? 'KVM' : `QEMU's emulation (TCG, ${accel.why})`}`)
    await step('libvirt', 'Starting libvirt (daemons, storage pool)', async () => {
      await ensureLibvirtDaemons(log)
      await ensureStoragePool(log)
      await removeStaleDomains(plan, new Set(knownMachines('libvirt').values()), log)
    })
  }
  if (vms)
    await step('vm_box', 'Ensuring the VM box (built once, then cached)', () =>
      ensureVmBox(log).then((r) => {
        if (r.built) log(`    VM box built in ${r.seconds.toFixed(0)} s`)
      }),
    )
  if (want.has('lxc')) {
    await step('box', `Ensuring the lxc box ${boxName()} (built once, then cached)`, () => ensureBox(log))
    await step('stale', 'Removing stale lab resources', async () => {
      await removeStaleContainers(plan, boxName(), log)
      await removeLeftovers(plan, log)
    })
  }
  await step('networks', 'Creating the lab networks', () => networksUp(plan, log, { libvirtMgmt }))
}

/**
 * vagrant destroy -f (these hosts, or all). Vagrant destroys a host it records as a VM
 * through libvirtd, which must answer; and a record whose VM is already gone (removed as
 * stale by another clone, whose lab:down then stopped the daemons and the bridges) is
 * only forgotten: vagrant-libvirt would first refuse its networks, whose bridges are gone.
 */
async function destroy(names: string[], log: Log): Promise<void> {
  const vms = [...runningProviders()].filter(([h, p]) => p === 'libvirt' && (names.length === 0 || names.includes(h)))
  if (vms.length && process.getuid?.() === 0) {
    await ensureLibvirtDaemons(log)
    for (const [h] of vms) {
      const record = path.join(repoRoot, '.vagrant', 'machines', h, 'libvirt')
      if (await domainExists(fs.readFileSync(path.join(record, 'id'), 'utf8').trim())) continue
      log(`    ${h}: its VM no longer exists (removed elsewhere); Vagrant's record of it is dropped`)
      fs.rmSync(record, { recursive: true, force: true })
    }
  }
  const recorded = runningProviders()
  const left = names.filter((h) => recorded.has(h))
  if (names.length && left.length === 0) return
  await vagrant(['destroy', '-f', ...left], log)
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
  // The management bridge becomes libvirt's network when the lab gets VMs (or libvirt
  // is installed): containers on a plain bridge of that name are remade on the new one.
  const mgmt = managementNetwork(plan).bridge
  if (
    (providers.includes('libvirt') || (await libvirtAvailable())) &&
    fs.existsSync(`/sys/class/net/${mgmt}`) &&
    !(await mgmtNetworkDefined(plan))
  ) {
    const onPlain = hostsOf(runningProviders(), 'lxc')
    if (onPlain.length)
      await timed(
        'vagrant_destroy',
        `vagrant destroy -f ${onPlain.join(' ')} (their management bridge becomes libvirt's network)`,
        () => destroy(onPlain, log),
      )
  }
  await prepare(providers, log, timed)
  // VMs first, in parallel (libvirt's way); then the containers. The trigger in the
  // Vagrantfile need not prepare again.
  const order: Provider[] = ['libvirt', 'virtualbox', 'lxc']
  for (const p of order.filter((x) => providers.includes(x))) {
    const hosts = hostsOf(planned, p)
    const all = hosts.length === plan.hosts.length
    await timed('vagrant_up', `vagrant up --provider=${p}${all ? '' : ` ${hosts.join(' ')}`}`, () =>
      vagrant(['up', `--provider=${p}`, ...(all ? [] : hosts)], log, { LAB_PREPARED: '1' }),
    )
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
      await removeStaleContainers(plan, '', log) // '' matches no box: every container left goes
      await removeLeftovers(plan, log)
      await removeLabDomains(plan, log)
      await removeLabVolumes(plan, log)
      await removeMgmtNetwork(plan, log)
      await clearAllImpairments(log)
      await networksDown(plan, log)
      await stopLabDaemons(log)
    })
  }
  const remaining = await labRemnants(plan)
  if (remaining.length) throw new Error(`the lab left behind:\n  ${remaining.join('\n  ')}`)
  log('Nothing of the lab is left on this machine.')
}

/** Everything of the lab still on this machine (empty after `lab down`). */
export async function labRemnants(t: Plan): Promise<string[]> {
  const { cgroups, mounts } = leftovers(t)
  return [
    ...labContainers(t).map((c) => `container ${c}`),
    ...(await labDomains(t)).map((d) => `VM ${d}`),
    ...(await labVolumes(t)).map((v) => `volume ${v}`),
    ...((await mgmtNetworkDefined(t)) ? [`libvirt network ${mgmtNetworkName(t)}`] : []),
    ...runningLabDaemons().map((d) => `daemon ${d}`),
    ...existingBridges(t).map((b) => `bridge ${b}`),
    ...((await impairmentTableExists()) ? [`nftables table bridge ${BRIDGE_TABLE} (link impairments)`] : []),
    ...cgroups.map((c) => `cgroup ${c}`),
    ...mounts.map((m) => `mount ${m}`),
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
  const accel = vmAccel()
  const providerCell = (p: Provider | undefined) => (p === 'libvirt' ? `libvirt (${accel.accel})` : (p ?? '-'))
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
  return ['', fmt(head), ...rows.map(fmt)].join('\n') + impairments + (running ? watchText(await watch(plan)) : '')
}
