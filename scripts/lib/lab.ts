// The lab's life cycle, as `npm run lab` and the tests drive it: up (everything a
// newcomer needs, in order, each step timed), down (leaves nothing behind), status.
import { spawn } from 'node:child_process'
import { vagrantInventory } from '../../provision/inventory.js'
import { provision } from '../../provision/run.js'
import { parseRawSas } from '../../provision/lib/swanctl.js'
import { SshHost } from '../../provision/ssh.js'
import { recapText, summarize } from '../../provision/report.js'
import type { Reporter } from '../../provision/runner.js'
import { loadTopology, type Topology } from '../../provision/topology.js'
import { boxName, ensureBox } from './box.js'
import { labContainers, leftovers, removeLeftovers, removeStaleContainers } from './lxc.js'
import { existingBridges, networksDown, networksUp } from './network.js'
import { repoRoot, stateDir, topologyFile } from './paths.js'
import { ensureRequirements } from './system.js'
import { detectProvider, machineStates } from './vagrant.js'

export type Log = (m: string) => void

/** Run one long step with visible start and end, and its duration. */
export async function phase<T>(log: Log, title: string, fn: () => Promise<T>): Promise<T> {
  log(`==> ${title}`)
  const t0 = Date.now()
  const r = await fn()
  log(`    done in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return r
}

export function vagrant(args: string[], log: Log): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('vagrant', args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
    let tail = ''
    const relay = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000)
      for (const line of chunk.toString().split('\n')) if (line.trim()) log(`    | ${line}`)
    }
    child.stdout.on('data', relay)
    child.stderr.on('data', relay)
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`vagrant ${args.join(' ')} exited with ${code}:\n${tail.trim().split('\n').slice(-8).join('\n')}`))))
  })
}

export interface UpResult { seconds: Record<string, number>; provider: string; changed: number }

export async function labUp(log: Log = console.log, opts: { provision?: boolean } = {}): Promise<UpResult> {
  const seconds: Record<string, number> = {}
  const timed = async <T>(key: string, title: string, fn: () => Promise<T>) => {
    const t0 = Date.now()
    const r = await phase(log, title, fn)
    seconds[key] = (Date.now() - t0) / 1000
    return r
  }
  const topology = loadTopology(topologyFile)
  const provider = await detectProvider()
  log(`Lab "${topology.name}": ${topology.hosts.length} hosts on ${topology.networks.length} networks, provider ${provider}`)
  if (provider === 'lxc') {
    if (process.getuid?.() !== 0) throw new Error('the lxc provider needs root here (containers, bridges): run `sudo npm run lab`')
    await timed('requirements', 'Checking this machine has what the lab needs', () => ensureRequirements(log))
    await timed('box', `Ensuring the lxc box ${boxName()} (built once, then cached)`, () => ensureBox(log))
    await timed('stale', 'Removing stale lab resources', async () => {
      await removeStaleContainers(topology, boxName(), log)
      await removeLeftovers(topology, log)
    })
    await timed('networks', 'Creating the lab networks', () => networksUp(topology, log))
  }
  await timed('vagrant_up', `vagrant up --provider=${provider}`, () => vagrant(['up', `--provider=${provider}`], log))
  let changed = 0
  if (opts.provision !== false) {
    const failures: Reporter = (host, kind, r) => { if (r.status === 'failed') log(`    ${host}: ${kind} "${r.name}" failed: ${r.error}`) }
    const recaps = await timed('provision', 'Provisioning every host', () => provision({ topology, repoRoot, stateDir, report: failures }))
    log(recapText(recaps, false))
    const s = summarize(recaps)
    if (s.failed + s.unreachable > 0) throw new Error(`provisioning failed on ${s.failed + s.unreachable} host(s): see the recap above, fix, then \`npm run provision\``)
    changed = s.changed
  }
  log(await statusText(topology))
  return { seconds, provider, changed }
}

export async function labDown(log: Log = console.log): Promise<void> {
  const topology = loadTopology(topologyFile)
  await phase(log, 'vagrant destroy -f', () => vagrant(['destroy', '-f'], log))
  if (process.getuid?.() === 0) {
    await phase(log, 'Removing the lab\'s containers, networks and leftovers', async () => {
      await removeStaleContainers(topology, '', log) // '' matches no box: every container left goes
      await removeLeftovers(topology, log)
      await networksDown(topology, log)
    })
  }
  const remaining = labRemnants(topology)
  if (remaining.length) throw new Error(`the lab left behind:\n  ${remaining.join('\n  ')}`)
  log('Nothing of the lab is left on this machine.')
}

/** Everything of the lab still on this machine (empty after `lab down`). */
export function labRemnants(t: Topology): string[] {
  const { cgroups, mounts } = leftovers(t)
  return [
    ...labContainers(t).map((c) => `container ${c}`),
    ...existingBridges(t).map((b) => `bridge ${b}`),
    ...cgroups.map((c) => `cgroup ${c}`),
    ...mounts.map((m) => `mount ${m}`),
  ]
}

/** Each gateway's IPsec data path and its tunnels' state, read over SSH. */
async function ipsecStatus(topology: Topology, states: Map<string, string>): Promise<Map<string, string>> {
  const gateways = topology.hosts.filter((h) => h.role === 'gateway' && states.get(h.name) === 'running')
  const out = new Map<string, string>()
  if (gateways.length === 0) return out
  const inv = await vagrantInventory(gateways.map((g) => g.name), repoRoot)
  await Promise.all(gateways.map(async (g) => {
    const entry = inv.entries.get(g.name)
    if (!entry) return
    try {
      const host = await SshHost.connect(entry, 5000)
      try {
        const r = await host.exec('cat /etc/lab/ipsec-mode 2>/dev/null; swanctl --list-sas --raw 2>/dev/null', { check: false })
        const [mode, ...sas] = r.stdout.split('\n')
        const tunnels = parseRawSas(sas.join('\n')).map((s) => `${s.name} ${s.state}${s.children[0] ? `/${s.children[0].state}` : ''}`)
        out.set(g.name, `${mode.trim() || 'not provisioned'}; ${tunnels.join(', ') || 'no tunnel'}`)
      } finally {
        await host.close()
      }
    } catch (e) {
      out.set(g.name, `unknown (${(e as Error).message.split(':')[0]})`)
    }
  }))
  return out
}

export async function statusText(topology: Topology): Promise<string> {
  const states = await machineStates()
  const ipsec = await ipsecStatus(topology, states)
  const rows = topology.hosts.map((h) => [
    h.name, h.role, states.get(h.name) ?? 'unknown', h.mgmt.address,
    h.interfaces.slice(1).map((i) => `${i.network} ${i.address}/${i.prefix}`).join(', '),
    ipsec.get(h.name) ?? '',
  ])
  const head = ['host', 'role', 'state', 'management', 'lab addresses', 'IPsec (data path; tunnels)']
  const widths = head.map((_, i) => Math.max(head[i].length, ...rows.map((r) => r[i].length)))
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  return ['', fmt(head), ...rows.map(fmt)].join('\n')
}
