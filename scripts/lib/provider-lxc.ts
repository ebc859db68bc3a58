// The lxc provider: the hosts are system containers through vagrant-lxc, from the box
// the lab builds (box.ts), on the lab's bridges. Faults are made with LXC's own tools,
// not Vagrant's: vagrant-lxc cannot restart a stopped container as root (it appends its
// config again on each start), lxc-start can.
import fs from 'node:fs'
import { $ } from 'zx'
import { boxName, ensureBox } from './box.js'
import { connect, deviceOf, linkName, type Link } from './links.js'
import { labContainers, leftovers, removeLeftovers, removeStaleContainers } from './lxc.js'
import { applyLimits } from './lxc-limits.js'
import type { Host, Plan } from '../../provision/plan.js'
import type { MachineRecord } from '../../provision/vagrant-state.js'
import type { ProviderOps } from './provider-types.js'
import { LXC_REQUIREMENTS } from './system.js'

const q = { quiet: true, nothrow: true }

async function lxc(tool: string, args: string[], what: string): Promise<void> {
  const r = await $(q)`${tool} ${args}`
  if (r.exitCode !== 0)
    throw new Error(`${what}: ${tool} ${args.join(' ')} failed: ${r.stderr.trim() || r.stdout.trim()}`)
}

/** The host side of a container's interface: the veth whose index the container's end names. */
export async function vethOf(link: Extract<Link, { kind: 'interface' }>): Promise<string> {
  const host = await connect(link.host)
  try {
    const dev = await deviceOf(host, link)
    const r = await host.exec(`cat /sys/class/net/${dev}/iflink`, { check: false })
    const index = Number(r.stdout.trim())
    if (r.code !== 0 || !index) throw new Error(`${linkName(link)}: the container has no interface ${dev}`)
    for (const name of fs.readdirSync('/sys/class/net')) {
      if (Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8')) === index) return name
    }
    throw new Error(`${linkName(link)}: no interface with index ${index} on this machine`)
  } finally {
    await host.close()
  }
}

/** The host-side veths of a container's lab links (every network but management). */
async function labVeths(host: Host, plan: Plan): Promise<string[]> {
  const veths: string[] = []
  for (const i of host.interfaces.filter((x) => x.network !== host.mgmt.network)) {
    const network = plan.networks.find((n) => n.name === i.network)!
    veths.push(await vethOf({ kind: 'interface', host, network }))
  }
  return veths
}

async function setLinks(m: MachineRecord, host: Host, plan: Plan, state: 'up' | 'down'): Promise<void> {
  for (const veth of await labVeths(host, plan))
    await lxc('ip', ['link', 'set', veth, state], `${m.host}: ${veth} ${state}`)
}

export const lxcProvider: ProviderOps = {
  name: 'lxc',
  requirements: LXC_REQUIREMENTS,
  onLabBridges: true,
  ownKernel: false,
  nicNames: 'network',
  ownsManagementNetwork: () => Promise.resolve(false),
  async prepare({ plan, log, step, inUse }) {
    if (!inUse) return
    await step('box', `Ensuring the lxc box ${boxName()} (built once, then cached)`, () => ensureBox(log))
    await step('stale', 'Removing stale lab resources', async () => {
      await removeStaleContainers(plan, boxName(), log)
      await removeLeftovers(plan, log)
    })
  },
  async afterUp(machines, plan, log) {
    // A running container keeps the limits it started with; the topology's may have
    // changed since (vagrant up leaves a running container alone).
    for (const m of machines) {
      const h = plan.hosts.find((x) => x.name === m.host)!
      const changed = await applyLimits(m.id, h.limits)
      const limits = Object.keys(h.limits).length ? JSON.stringify(h.limits) : 'none'
      if (changed.length) log(`    ${h.name}: the topology's limits (${limits}) set in ${changed.join(' and ')}`)
    }
  },
  async state(id) {
    const r = await $(q)`lxc-info -s -n ${id}`
    const word = /State:\s+(\S+)/.exec(r.stdout)?.[1]
    if (r.exitCode === 0 && word)
      return ({ RUNNING: 'running', STOPPED: 'stopped', FROZEN: 'frozen' } as Record<string, string>)[word]
    if (r.exitCode !== 127 && /doesn't exist|does not exist/i.test(r.stderr + r.stdout)) return 'not_created'
    return undefined
  },
  label: () => 'lxc',
  async capturePoint(link) {
    return { on: 'machine', iface: await vethOf(link) }
  },
  async cleanup(plan, log) {
    await removeStaleContainers(plan, '', log) // '' matches no box: every container left goes
    await removeLeftovers(plan, log)
  },
  remnants(plan) {
    const { cgroups, mounts } = leftovers(plan)
    return Promise.resolve([
      ...labContainers(plan).map((c) => `container ${c}`),
      ...cgroups.map((c) => `cgroup ${c}`),
      ...mounts.map((m) => `mount ${m}`),
    ])
  },
  faults: {
    stopHard: (m) => lxc('lxc-stop', ['-k', '-n', m.id], `${m.host}: stop hard`),
    start: (m) => lxc('lxc-start', ['-n', m.id], `${m.host}: start`),
    freeze: (m) => lxc('lxc-freeze', ['-n', m.id], `${m.host}: freeze`),
    thaw: (m) => lxc('lxc-unfreeze', ['-n', m.id], `${m.host}: thaw`),
    isolate: (m, host, plan) => setLinks(m, host, plan, 'down'),
    rejoin: (m, host, plan) => setLinks(m, host, plan, 'up'),
  },
}
