// What adding a backend adds (issue 20, "scale-out shown on a small machine"): on this
// machine every host shares the same cores, so an uncapped second backend adds little.
// Capped at a fraction of a core each (the topology's `cpus`, a container's cgroup),
// backends are the scarce tier, and the curve shows what each one adds until another
// tier takes over. The backends beyond the topology's are added as data (a copy of the
// topology, `vagrant up` of the new containers, a provision), as a user would; the
// same full-path load then runs with 1, 2, ... of them in nginx, and the lab is put back
// (provisioned with its own topology, the added containers destroyed, the caps lifted).
import fs from 'node:fs'
import { parse } from 'yaml'
import { clientOf, hostsWithRole, type Plan } from '../../provision/plan.js'
import { parseAddress } from '../../provision/lib/ipv4.js'
import { topologyFile } from '../../provision/paths.js'
import { applyLimits, containerLimits } from '../lib/lxc-limits.js'
import { machineOf } from '../lib/providers.js'
import { tiersDuring, type TierCpu } from './cpu.js'
import { fitLine, type Curve, type LineFit } from './curve.js'
import { runScenario, settleLoad, withBackends, type LoadOptions } from './ingest.js'
import { freeAddress, usedAddresses, withTopologyCopy, type RawTopology } from './topology-copy.js'

/**
 * The topology with `total` backends, each capped at `cpus`: the added ones named and
 * addressed after the last backend (the next free address of each of its networks,
 * skipping any address the plan already uses). Pure: the raw topology is not changed.
 */
export function moreBackends(
  raw: RawTopology,
  plan: Plan,
  total: number,
  cpus: number,
): { raw: RawTopology; added: string[] } {
  const backends = hostsWithRole(plan, 'backend')
  if (!backends.length) throw new Error('the topology has no backend to add more of')
  if (total < backends.length)
    throw new Error(`${total} backends: the topology already has ${backends.length}; ask for at least that many`)
  const out = structuredClone(raw)
  for (const b of backends) out.hosts[b.name] = { ...out.hosts[b.name], cpus }
  const last = backends[backends.length - 1]
  const used = usedAddresses(plan)
  const next = new Map(Object.entries(out.hosts[last.name].interfaces).map(([net, a]) => [net, parseAddress(a)!]))
  const added: string[] = []
  const highest = Math.max(0, ...backends.map((b) => Number(/(\d+)$/.exec(b.name)?.[1] ?? 0)))
  for (let i = 1; backends.length + added.length < total; i++) {
    const name = last.name.replace(/\d+$/, '') + String(highest + i)
    if (out.hosts[name]) continue
    const interfaces: Record<string, string> = {}
    for (const [net, from] of next) {
      interfaces[net] = freeAddress(plan, net, name, used, from)
      next.set(net, parseAddress(interfaces[net])!)
    }
    out.hosts[name] = { role: 'backend', interfaces, cpus }
    added.push(name)
  }
  return { raw: out, added }
}

export interface BackendsPoint {
  backends: number
  readings_per_s: number
  p50_ms: number
  p99_ms: number
  lost: number
  tiers: TierCpu[]
}

export interface BackendsReport {
  cpus_each: number
  batch: number
  points: BackendsPoint[]
  fit?: LineFit
  /** readings/s with all of them over (one backend's × their number): the goal 0.8. */
  efficiency?: number
  /** At the most backends: the busiest tier, and the backends' own share of their caps. */
  busiest?: { tier: string; cores: number; backends_of_cap: number }
}

/** Scaling efficiency: what n backends carry over n times what one carries. */
export function efficiencyOf(points: Pick<BackendsPoint, 'backends' | 'readings_per_s'>[]): number | undefined {
  const one = points.find((p) => p.backends === 1)
  const most = points.reduce<(typeof points)[number] | undefined>(
    (m, p) => (!m || p.backends > m.backends ? p : m),
    undefined,
  )
  if (!one || !most || most.backends === 1 || !(one.readings_per_s > 0)) return undefined
  return Math.round((most.readings_per_s / (most.backends * one.readings_per_s)) * 100) / 100
}

export async function backendsBench(
  plan: Plan,
  o: { total: number; cpus: number; load: LoadOptions },
  log: (m: string) => void,
): Promise<BackendsReport> {
  const existing = hostsWithRole(plan, 'backend')
  if (existing.some((b) => b.provider !== 'lxc'))
    throw new Error(
      "the backends curve caps backends through their cgroup: the backends must be containers (lxc), which this lab's are not",
    )
  const { raw, added } = moreBackends(
    parse(fs.readFileSync(topologyFile, 'utf8')) as RawTopology,
    plan,
    o.total,
    o.cpus,
  )
  // Each backend's container (its LXC name is Vagrant's machine id) and its limits now.
  const id = new Map(existing.map((b) => [b.name, machineOf(b.name).machine.id]))
  const before = new Map<string, Awaited<ReturnType<typeof containerLimits>>>()
  for (const b of existing) before.set(b.name, await containerLimits(id.get(b.name)!))
  log(
    `Backends: ${o.total} backends capped at ${o.cpus} of a core each (${added.join(', ')} added as data), the full path with 1 to ${o.total}, batches of ${o.load.batch ?? 1}`,
  )
  const points: BackendsPoint[] = []
  await withTopologyCopy(
    raw,
    added,
    `${o.total} backends`,
    async (bigger, lab) => {
      const [client] = hostsWithRole(bigger, 'iot-client')
      const url = clientOf(bigger, client.name)!.url
      // Just provisioned, the lab is still settling (new containers, reloaded nginx, fresh
      // pools): some load first, not measured (a first run came out at a quarter of the next).
      await settleLoad(lab, client.name, url, o.load, 4)
      for (let k = 1; k <= o.total; k++) {
        const { result: s, tiers } = await tiersDuring(
          lab,
          client.name,
          () =>
            withBackends(lab, k, () =>
              runScenario(
                lab,
                {
                  id: `capped-${k}`,
                  title: `full path, ${k} capped backend${k > 1 ? 's' : ''}`,
                  from: client.name,
                  url,
                  backends: k,
                },
                o.load,
                log,
              ),
            ),
          (x) => x.runs.reduce((n, r) => n + r.cpu_s, 0),
        )
        points.push({
          backends: k,
          readings_per_s: s.readings_per_s.median,
          p50_ms: s.p50_ms.median,
          p99_ms: s.p99_ms.median,
          lost: s.lost,
          tiers: tiers.slice(0, 5),
        })
      }
    },
    log,
    {
      before: async () => {
        for (const b of existing) await applyLimits(id.get(b.name)!, { ...before.get(b.name), cpus: o.cpus })
      },
      // The caps lifted once the added backends are gone.
      after: async () => {
        for (const b of existing)
          await applyLimits(id.get(b.name)!, before.get(b.name)!).catch((e: Error) => log(`  ${b.name}: ${e.message}`))
      },
    },
  )
  const most = points[points.length - 1]
  const efficiency = efficiencyOf(points)
  const backendCores = most?.tiers.find((x) => x.tier === 'backend')?.cores ?? 0
  return {
    cpus_each: o.cpus,
    batch: o.load.batch ?? 1,
    points,
    ...(points.length >= 2 ? { fit: fitLine(points.map((p) => ({ x: p.backends, y: p.readings_per_s }))) } : {}),
    ...(efficiency !== undefined ? { efficiency } : {}),
    ...(most?.tiers[0]
      ? {
          busiest: {
            tier: most.tiers[0].tier,
            cores: most.tiers[0].cores,
            backends_of_cap: Math.round((backendCores / (most.backends * o.cpus)) * 100) / 100,
          },
        }
      : {}),
  }
}

/** Readings per second against backends, with the fitted line. */
export function backendsCurve(b: BackendsReport): Curve {
  const one = b.points.find((p) => p.backends === 1)?.readings_per_s
  return {
    title: `Backends capped at ${b.cpus_each} of a core each: readings per second on the full path`,
    x: 'backends',
    y: 'readings/s',
    fit: true,
    series: [
      { name: `batches of ${b.batch}`, points: b.points.map((p) => ({ x: p.backends, y: p.readings_per_s })) },
      // The reference: each backend adding what the first carries.
      ...(one
        ? [{ name: 'n times one backend', points: b.points.map((p) => ({ x: p.backends, y: p.backends * one })) }]
        : []),
    ],
  }
}
