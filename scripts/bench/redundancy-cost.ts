// What redundancy costs, side by side in one run: the full path's readings/s and
// latency, and the whole lab's CPU and memory at rest, on the redundant topology (the
// running lab) and on the single one (topology.single.yaml), measured redundant, single,
// redundant again (the single bracketed, against a shared machine's drift).
//
// The single lab is made in place, from the same networks: the members it does not
// have are set aside (cut off from the lab's networks and frozen, lab:fault's
// operations: they keep their state, the database cluster its data, and take no CPU),
// the hosts it has in another shape (the hub with its own addresses) are made anew,
// those only it has are added, and every host is provisioned with its topology. Then
// all is put back, even when the measurement fails midway: its hosts destroyed, the
// lab's remade, the members set aside thawed and joined again, the lab provisioned with
// its own topology. The IoT client stays paused throughout, so that none of its readings
// lands in the single lab's database (destroyed after): they wait in its outbox.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { parse, stringify } from 'yaml'
import { clientOf, hostsWithRole, loadPlan, type Host, type Plan } from '../../provision/plan.js'
import { repoRoot, stateDir } from '../../provision/paths.js'
import { waitFor } from '../../provision/lib/wait.js'
import { patroniPatch } from '../../provision/roles/db.js'
import { clearFault, makeFault } from '../lib/host-faults.js'
import { machineOf } from '../lib/providers.js'
import { cpuSample, tierCpu, tiersDuring, type TierCpu } from './cpu.js'
import { runScenario, settleLoad, telemetrySql, type LoadOptions, type Scenario } from './ingest.js'
import { openBenchLab, type BenchLab } from './lab.js'
import { figure, type Figure } from './stats.js'
import { freeAddress, provisionWith, usedAddresses, type RawTopology } from './topology-copy.js'

const run = promisify(execFile)

/** The single topology a user brings up with LAB_TOPOLOGY. */
export const SINGLE_TOPOLOGY = path.join(repoRoot, 'topology.single.yaml')

/** How long the lab's CPU is read at rest (the client paused, no load): the experiment's window. */
const REST_S = 20

/** How the lab's hosts change from one topology to the other, by name. */
export interface TopologyShift {
  /** In both, the same (role, interfaces, limits): provisioned with each topology. */
  kept: string[]
  /** In both, in another shape: destroyed and made again each way. */
  remade: string[]
  /** Only in the lab's topology: cut off and frozen while the other is measured. */
  setAside: string[]
  /** Only in the other: made for it, destroyed after. */
  added: string[]
}

/** A value as JSON with its keys sorted, so that two hosts written in another order compare equal. */
const canonical = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  )

/**
 * Which hosts are kept, remade, set aside or added going from `from` to `to`. Refused
 * (an Error naming the difference) where the two are not the same lab: another name,
 * or other networks (the hosts are switched in place, on the same bridges).
 */
export function topologyShift(from: RawTopology, to: RawTopology): TopologyShift {
  if (from.name !== to.name)
    throw new Error(
      `the two topologies name different labs (${String(from.name)} and ${String(to.name)}): the single lab is made in place of the running one, so it must be the same lab`,
    )
  const cidrs = (t: RawTopology) =>
    canonical(
      Object.fromEntries(
        Object.entries((t.networks ?? {}) as Record<string, { cidr?: string }>).map(([n, x]) => [n, x.cidr]),
      ),
    )
  if (cidrs(from) !== cidrs(to))
    throw new Error(
      `the two topologies have different networks (${cidrs(from)} against ${cidrs(to)}): their hosts are switched on the same bridges, so the networks must be the same`,
    )
  const shift: TopologyShift = { kept: [], remade: [], setAside: [], added: [] }
  for (const [name, h] of Object.entries(from.hosts)) {
    const other = to.hosts[name]
    if (!other) shift.setAside.push(name)
    else (canonical(h) === canonical(other) ? shift.kept : shift.remade).push(name)
  }
  shift.added = Object.keys(to.hosts).filter((n) => !from.hosts[n])
  if (shift.setAside.length + shift.remade.length + shift.added.length === 0)
    throw new Error('the two topologies have the same hosts: there is nothing to compare')
  return shift
}

/**
 * The other topology, with the management address of each host it makes (remade or
 * added) moved where a host set aside holds it: a member set aside keeps its management
 * link (so it can be thawed and joined again). Management carries SSH and the monitor's
 * scrapes, none of the path measured. Says what it moved.
 */
export function clearOfSetAside(
  lab: Plan,
  to: RawTopology,
  shift: TopologyShift,
): { raw: RawTopology; moved: string[] } {
  const mgmt = lab.networks.find((n) => n.kind === 'management')!
  const held = new Set(
    lab.hosts
      .filter((h) => shift.setAside.includes(h.name))
      .map((h) => h.interfaces.find((i) => i.network === mgmt.name)?.address),
  )
  const used = usedAddresses(lab)
  for (const h of Object.values(to.hosts)) for (const a of Object.values(h.interfaces)) used.add(a)
  const raw = structuredClone(to)
  const moved: string[] = []
  for (const name of [...shift.remade, ...shift.added]) {
    const ifs = raw.hosts[name].interfaces
    if (!held.has(ifs[mgmt.name])) continue
    const address = freeAddress(lab, mgmt.name, name, used)
    moved.push(`${name}'s management address ${ifs[mgmt.name]} (held by a member set aside) moved to ${address}`)
    ifs[mgmt.name] = address
  }
  return { raw, moved }
}

export interface Side {
  topology: string
  hosts: number
  /** Rows in the readings table when the side's runs began (the single lab's filled to the cluster's). */
  table_rows: number
  /** The full path, one entry per run. */
  full: Scenario
  /** Cores per tier over the full path's runs (warm-ups and the checks between runs included). */
  load: TierCpu[]
  /** At rest, the client paused: cores per tier and in all, over REST_S. */
  rest: { tiers: TierCpu[]; cores: number; seconds: number }
  /** Resident memory (RSS) of every process on the lab's hosts, summed (shared pages counted in each), MiB. */
  memory_mib: number
}

export interface RedundancyCost {
  shift: TopologyShift
  /** Management addresses the single lab was given where a member set aside held its own. */
  moved: string[]
  redundant: Side[]
  single: Side
  /** The database cluster's leader and timeline before and after (a cluster set aside only). */
  cluster?: { before: string; after: string }
  /** Pooled over both redundant sides. */
  compare: { readings_per_s: { redundant: Figure; single: Figure }; p99_ms: { redundant: Figure; single: Figure } }
  seconds: number
}

/** The full path measured on a lab, and the lab at rest. */
async function measureSide(lab: BenchLab, topology: string, o: LoadOptions, log: (m: string) => void): Promise<Side> {
  const plan = lab.plan
  const [client] = hostsWithRole(plan, 'iot-client')
  const url = clientOf(plan, client.name)!.url
  await settleLoad(lab, client.name, url, o, 2)
  const table_rows = await readingsRows(lab)
  log(`  ${topology}: ${plan.hosts.length} hosts, ${table_rows} readings stored`)
  // Where the cores went under the load: the tiers' CPU over the runs (the load generator's own added to its host's).
  const { result: full, tiers: load } = await tiersDuring(
    lab,
    client.name,
    () =>
      runScenario(
        lab,
        {
          id: 'full',
          title: `full path, ${topology}`,
          from: client.name,
          url,
          backends: plan.services.backends.length,
        },
        o,
        log,
      ),
    (s) => s.runs.reduce((n, r) => n + r.cpu_s, 0),
  )
  log(`  ${topology} under the load: ${load.map((x) => `${x.tier} ${x.cores.toFixed(2)}`).join(', ')} cores`)
  const roles = new Map(plan.hosts.map((h) => [h.name, h.role]))
  const before = await cpuSample(lab)
  const t0 = Date.now()
  // The window of the experiment, not a wait for something to happen.
  await new Promise((resolve) => setTimeout(resolve, REST_S * 1000))
  const wall = (Date.now() - t0) / 1000
  const tiers = tierCpu((h) => roles.get(h), before, await cpuSample(lab), wall)
  const kib = await Promise.all(
    plan.hosts.map(
      async (h) => Number((await lab.sh(h.name, "ps -eo rss= | awk '{s+=$1} END {print s+0}'")).stdout.trim()) || 0,
    ),
  )
  const memory_mib = Math.round(kib.reduce((a, b) => a + b, 0) / 1024)
  const rest = {
    tiers,
    cores: Math.round(tiers.reduce((s, x) => s + x.cores, 0) * 100) / 100,
    seconds: Math.round(wall),
  }
  log(
    `  ${topology} at rest: ${rest.cores.toFixed(2)} cores (${tiers.map((x) => `${x.tier} ${x.cores.toFixed(2)}`).join(', ')}), ${memory_mib} MiB resident`,
  )
  return {
    topology,
    hosts: plan.hosts.length,
    table_rows,
    full,
    load,
    rest,
    memory_mib,
  }
}

/** Rows in the readings table, on the database that serves (a cluster's primary). */
const readingsRows = async (lab: BenchLab) => Number((await telemetrySql(lab, 'SELECT count(*) FROM readings;')).trim())

/**
 * Give the single lab's new database as many readings as the cluster holds: inserting
 * into a table and index larger than PostgreSQL's buffers costs more than into an empty
 * one, and the comparison is of the topologies, not of the tables' sizes. The filler
 * rows are of devices of their own (`filler-N`), as many as the load's, in one insert.
 */
async function fillTo(lab: BenchLab, rows: number, devices: number, log: (m: string) => void) {
  const missing = rows - (await readingsRows(lab))
  if (missing <= 0) return
  const t0 = Date.now()
  await telemetrySql(
    lab,
    `INSERT INTO readings (device_id, seq, time, value, digest, backend) SELECT 'filler-' || (g % ${devices}), g, now(), 0, md5(g::text), 'filler' FROM generate_series(1, ${missing}) g; VACUUM (ANALYZE) readings;`,
  )
  log(
    `  the single lab's database given ${missing} filler readings (the cluster's ${rows}) in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  )
}

/**
 * Patroni's maintenance mode on (`pause`) or off. Paused, Patroni changes nothing in
 * PostgreSQL: the cluster frozen whole and thawed finds its leader key expired, and
 * would otherwise demote and promote its primary again (a new timeline, a failover
 * alert) although nothing failed. The setting lives in etcd: asked of one member, it
 * is waited for on every member that runs.
 */
async function patroniPause(lab: BenchLab, on: boolean, members: string[]) {
  const db = lab.plan.services.db!
  const [first] = db.members
  const url = (address: string) => `http://${address}:${db.cluster!.patroniPort}`
  await lab.must(first.host, `curl -fsS --max-time 10 -K - ${url(first.address)}/config >/dev/null`, {
    stdin: patroniPatch(stateDir, { pause: on ? true : null }),
  })
  for (const m of db.members.filter((x) => members.includes(x.host)))
    await waitFor(
      `Patroni on ${m.host} to ${on ? 'pause' : 'resume, with a leader'}`,
      async () => {
        const r = await lab.sh(m.host, `curl -fsS --max-time 2 ${url(m.address)}/patroni`)
        if (r.code !== 0) return false
        const j = JSON.parse(r.stdout) as { pause?: boolean; role?: string; state?: string }
        return on ? j.pause === true : !j.pause && j.state === 'running'
      },
      60_000,
      500,
    )
}

/** The cluster's leader and its timeline, as Patroni's /cluster says (the proof it was put back as it was). */
export async function clusterLeader(lab: BenchLab): Promise<string> {
  const db = lab.plan.services.db!
  const [first] = db.members
  const j = JSON.parse(
    await lab.must(first.host, `curl -fsS --max-time 5 http://${first.address}:${db.cluster!.patroniPort}/cluster`),
  ) as { members: { name: string; role: string; timeline?: number }[] }
  const leader = j.members.find((m) => m.role === 'leader')
  return leader ? `${leader.name} on timeline ${leader.timeline}` : 'no leader'
}

/** vagrant up of these hosts of `plan`, each with its planned provider; the lab is prepared (LAB_PREPARED). */
async function up(plan: Plan, names: string[], env: NodeJS.ProcessEnv) {
  const byProvider = new Map<string, string[]>()
  for (const h of plan.hosts.filter((x) => names.includes(x.name)))
    byProvider.set(h.provider, [...(byProvider.get(h.provider) ?? []), h.name])
  for (const [provider, hosts] of byProvider)
    await run('vagrant', ['up', `--provider=${provider}`, ...hosts], { cwd: repoRoot, env, maxBuffer: 64 << 20 })
}

const destroy = (names: string[], env: NodeJS.ProcessEnv) =>
  names.length ? run('vagrant', ['destroy', '-f', ...names], { cwd: repoRoot, env, maxBuffer: 64 << 20 }) : undefined

export async function redundancyCost(
  plan: Plan,
  labTopology: string,
  singleTopology: string,
  o: LoadOptions,
  log: (m: string) => void,
): Promise<RedundancyCost> {
  const started = Date.now()
  const read = (f: string) => parse(fs.readFileSync(f, 'utf8')) as RawTopology
  const asGiven = read(singleTopology)
  const shift = topologyShift(read(labTopology), asGiven)
  const { raw: singleRaw, moved } = clearOfSetAside(plan, asGiven, shift)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-single-'))
  const file = path.join(dir, 'topology.yaml')
  fs.writeFileSync(file, stringify(singleRaw))
  const single = loadPlan(file)
  // The lab's networks, box and bridges are there: Vagrant's trigger must not prepare
  // with a topology that lacks the members set aside (it would remove them as stale).
  const labEnv = { ...process.env, LAB_PREPARED: '1' }
  const singleEnv = { ...labEnv, LAB_TOPOLOGY: file }
  const host = (name: string): Host => plan.hosts.find((h) => h.name === name)!
  log(
    `Redundancy's cost: ${path.basename(labTopology)} (${plan.hosts.length} hosts) against ${path.basename(singleTopology)} (${single.hosts.length}); set aside: ${shift.setAside.join(', ')}; remade: ${shift.remade.join(', ') || 'none'}; added: ${shift.added.join(', ') || 'none'}`,
  )
  for (const m of moved) log(`  ${m}`)

  const sides: Side[] = []
  const measureOn = async (p: Plan, topology: string, resume: boolean, fill = 0) => {
    const lab = await openBenchLab(p, { resumeClient: resume })
    try {
      if (fill) await fillTo(lab, fill, o.devices, log)
      sides.push(await measureSide(lab, topology, o, log))
    } finally {
      await lab.close()
    }
  }
  await measureOn(plan, 'redundant', false)
  const cluster = (plan.services.db?.members ?? []).map((m) => m.host).filter((h) => shift.setAside.includes(h))
  const leaders = { before: '', after: '' }
  let held = 0
  let singleSide: Side
  try {
    const lab = await openBenchLab(plan, { resumeClient: false })
    try {
      // What the cluster holds as it is set aside (the client is paused: nothing more comes).
      held = await readingsRows(lab)
      if (cluster.length) {
        leaders.before = await clusterLeader(lab)
        await patroniPause(lab, true, cluster)
      }
    } finally {
      await lab.close()
    }
    for (const name of shift.setAside) {
      await makeFault(plan, host(name), 'isolate', log)
      const { machine, ops } = machineOf(name)
      await ops.faults.freeze(machine)
    }
    await destroy(shift.remade, labEnv)
    await up(single, [...shift.remade, ...shift.added], singleEnv)
    await provisionWith(singleEnv, 'the single topology')
    await measureOn(single, 'single', false, held)
    singleSide = sides.pop()!
  } finally {
    log('  putting the lab back: its own topology')
    await destroy([...shift.remade, ...shift.added], singleEnv)?.catch((e: Error) =>
      log(`  vagrant destroy: ${e.message}`),
    )
    await up(plan, shift.remade, labEnv).catch((e: Error) => log(`  vagrant up: ${e.message}`))
    for (const name of shift.setAside)
      await clearFault(plan, host(name), log).catch((e: Error) => log(`  ${name}: ${e.message}`))
    if (cluster.length) {
      const lab = await openBenchLab(plan, { resumeClient: false })
      await patroniPause(lab, false, cluster)
        .then(async () => {
          leaders.after = await clusterLeader(lab)
          log(`  the database cluster: ${leaders.before} before, ${leaders.after} after`)
        })
        .catch((e: Error) =>
          log(
            `  the database cluster may still be paused (Patroni fails nothing over while it is): ${e.message}; \`npm run provision\` resumes it`,
          ),
        )
        .finally(() => lab.close())
    }
    await provisionWith(labEnv, 'the lab with its own topology')
    fs.rmSync(dir, { recursive: true, force: true })
  }
  await measureOn(plan, 'redundant, again', true)
  const pool = (f: (s: Side) => number[]) => figure(sides.flatMap(f))
  return {
    shift,
    moved,
    redundant: sides,
    single: singleSide,
    ...(cluster.length ? { cluster: leaders } : {}),
    compare: {
      readings_per_s: {
        redundant: pool((s) => s.full.runs.map((r) => r.readings_per_s)),
        single: singleSide.full.readings_per_s,
      },
      p99_ms: {
        redundant: pool((s) => s.full.runs.map((r) => r.latency_ms.p99)),
        single: singleSide.full.p99_ms,
      },
    },
    seconds: (Date.now() - started) / 1000,
  }
}

/** The report's section: the two topologies side by side. */
export function redundancyMarkdown(r: RedundancyCost): string {
  const [before, after] = r.redundant
  const cols = [before, r.single, after]
  const f = (x: Figure, d = 0) => `${x.median.toFixed(d)} (${x.min.toFixed(d)} to ${x.max.toFixed(d)})`
  const row = (name: string, cell: (s: Side) => string) => `| ${name} | ${cols.map(cell).join(' | ')} |`
  const pct = (a: number, b: number) => `${(((a - b) / b) * 100).toFixed(0)} %`
  return [
    `## What redundancy costs (npm run bench -- --redundancy-cost), ${r.seconds.toFixed(0)} s`,
    '',
    `The full path from the IoT client through the tunnel and nginx, ${before.full.runs.length} runs each, and the lab at rest (the client paused, ${before.rest.seconds} s), on the redundant topology before and after the single one, made in place: set aside ${r.shift.setAside.join(', ')}; remade ${r.shift.remade.join(', ') || 'none'}; added ${r.shift.added.join(', ') || 'none'}.`,
    ...(r.moved.length ? ['', ...r.moved.map((m) => `- ${m}`)] : []),
    ...(r.cluster
      ? [
          '',
          `The database cluster (Patroni paused while it was set aside): ${r.cluster.before} before, ${r.cluster.after} after${r.cluster.before === r.cluster.after ? ': no failover' : ': **it changed**'}.`,
        ]
      : []),
    '',
    '| | redundant | single | redundant, again |',
    '| --- | --- | --- | --- |',
    row('hosts', (s) => String(s.hosts)),
    row('readings stored when the runs began', (s) => String(s.table_rows)),
    row('readings/s', (s) => f(s.full.readings_per_s)),
    row('p50 ms', (s) => f(s.full.p50_ms, 1)),
    row('p99 ms', (s) => f(s.full.p99_ms, 1)),
    row('lost', (s) => String(s.full.lost)),
    row('CPU at rest, cores', (s) => s.rest.cores.toFixed(2)),
    row('memory resident, MiB', (s) => String(s.memory_mib)),
    '',
    `Redundant against single: readings/s ${pct(r.compare.readings_per_s.redundant.median, r.compare.readings_per_s.single.median)}, p99 ${pct(r.compare.p99_ms.redundant.median, r.compare.p99_ms.single.median)} (medians, both redundant sides pooled); at rest ${((before.rest.cores + after.rest.cores) / 2 - r.single.rest.cores).toFixed(2)} cores and ${Math.round((before.memory_mib + after.memory_mib) / 2 - r.single.memory_mib)} MiB more.`,
    '',
    ...tierTable('Under the load, by tier (cores, the load generator in its host’s):', cols, (s) => s.load),
    ...tierTable('At rest, by tier (cores):', cols, (s) => s.rest.tiers),
  ].join('\n')
}

function tierTable(title: string, cols: Side[], of: (s: Side) => TierCpu[]): string[] {
  const tiers = [...new Set(cols.flatMap((s) => of(s).map((x) => x.tier)))]
  return [
    title,
    '',
    '| tier | redundant | single | redundant, again |',
    '| --- | --- | --- | --- |',
    ...tiers.map(
      (tier) =>
        `| ${tier} | ${cols.map((s) => (of(s).find((x) => x.tier === tier)?.cores ?? 0).toFixed(2)).join(' | ')} |`,
    ),
    '',
  ]
}
