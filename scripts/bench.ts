// npm run bench -- [--runs N] [--duration S] [--devices N] [--concurrency N] [--bringup] [--smoke] [--out DIR]
// npm run bench -- --ha [--rounds N] [--tier ROLE] [--fault F]: the failover matrix (bench/ha.ts), then
//   (without --tier or --fault) what redundancy costs against the single topology (bench/redundancy-cost.ts)
// npm run bench -- --redundancy-cost [--single FILE]: that cost alone
// npm run bench -- --devices-curve [--max-rate R]: the open-loop devices curve alone (bench/devices.ts)
// npm run bench -- --backends-curve [--backends N] [--cap C]: capped backends added as data, 1..N (bench/backends.ts)
// npm run bench -- --sites-curve [--sites 1,10,...]: a site farm added as data, the hub against N sites (bench/sites.ts)
// npm run bench -- --esp-lookup [--other-sites 0,1000] [--rounds N]: VM gateways only, the hub's kernel ESP with
//   other sites' SAs and policies against none (bench/esp-lookup.ts)
// Measures the running lab, layer by layer, side by side in one run: ingest over the
// full path, the tunnel straight to one backend, and one backend from inside the cloud
// LAN; the full path with 1..N backends; the tunnel against the path without it and
// the cipher's limit; the client outbox's fsync cost; re-provisioning (and with --bringup, warm and cold bring-up,
// which rebuild the lab). Writes report.md, report.json and chart.svg under
// bench/results/<time>/ (or --out). A benchmark, not a test: it fails only when it
// cannot measure, never because a figure is low.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { hostsWithRole, loadPlan } from '../provision/plan.js'
import { bringUpBench, reprovisionBench } from './bench/bringup.js'
import { ingestBench } from './bench/ingest.js'
import { syncReplicationAB } from './bench/sync-replication.js'
import { openBenchLab, type BenchLab } from './bench/lab.js'
import {
  backendsMarkdown,
  sitesMarkdown,
  espLookupMarkdown,
  devicesMarkdown,
  markdown,
  svgChart,
  type BenchReport,
  type Machine,
} from './bench/report.js'
import { outboxBench } from './bench/outbox.js'
import { datapathBench } from './bench/datapath.js'
import { tunnelBench } from './bench/tunnel.js'
import { haBench, haMarkdown } from './bench/ha.js'
import { clusterLeader, redundancyCost, redundancyMarkdown, SINGLE_TOPOLOGY } from './bench/redundancy-cost.js'
import { devicesBench, devicesCurve, type DevicesOptions } from './bench/devices.js'
import { curveSvg } from './bench/curve.js'
import { backendsBench, backendsCurve } from './bench/backends.js'
import { sitesBench, sitesChartsDrawn } from './bench/sites.js'
import { espLookupBench } from './bench/esp-lookup.js'
import { HOST_FAULTS, type HostFault } from './lib/host-faults.js'
import { repoRoot, topologyFile } from '../provision/paths.js'
import { vmAccel } from '../provision/providers.js'
import { providerSummary, runningProviders } from './lib/providers.js'

async function machine(lab: BenchLab): Promise<Machine> {
  const t = lab.plan
  const first = (role: Parameters<typeof hostsWithRole>[1]) => hostsWithRole(t, role)[0]?.name
  const out = async (host: string | undefined, cmd: string) => {
    if (!host) return 'n/a'
    const r = await lab.sh(host, cmd)
    return r.stdout.trim() || r.stderr.trim()
  }
  return {
    cores: os.cpus().length,
    memory_gib: os.totalmem() / 2 ** 30,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    kernel: os.release(),
    provider: providerSummary(runningProviders().values()),
    ipsec_mode: await out(t.vpn?.hub, 'cat /etc/lab/ipsec-mode'),
    hosts: t.hosts.length,
    node_on_hosts: await out(first('iot-client'), 'node --version'),
    nginx: (await out(first('proxy'), 'nginx -v 2>&1')).replace(/^nginx version: nginx\//, ''),
    postgresql: (await out(first('db'), 'psql -V')).replace(/^psql \(PostgreSQL\) /, ''),
    strongswan: (await out(t.vpn?.hub, 'swanctl --version')).replace(/^strongSwan swanctl /, ''),
  }
}

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm run bench --')
  .usage('$0 [options]\n\nBenchmarks the running lab (npm run lab first) and writes a report.')
  .option('runs', {
    type: 'number',
    default: 3,
    describe: 'runs of each measurement (the report gives median and spread)',
  })
  .option('duration', { type: 'number', default: 6, describe: 'seconds of load per ingest run (after the warm-up)' })
  .option('warmup', { type: 'number', default: 1, describe: 'seconds of load before measuring, each run' })
  .option('devices', { type: 'number', default: 500, describe: 'simulated devices in the load generator' })
  .option('concurrency', { type: 'number', default: 32, describe: 'connections the load generator keeps busy' })
  .option('tunnel-seconds', { type: 'number', default: 3, describe: 'seconds per iperf3 run' })
  .option('bringup', {
    type: 'boolean',
    default: false,
    describe: 'also measure warm and cold `npm run lab` (rebuilds the lab: minutes)',
  })
  .option('smoke', {
    type: 'boolean',
    default: false,
    describe: 'a few seconds in all: proves the harness works (the test suite runs this)',
  })
  .option('ha', {
    type: 'boolean',
    default: false,
    describe:
      "only the failover matrix: each fault (stop, freeze, isolate) of each pair's active and standby member under the client's stream, the longest stall per round (minutes: about 20 s a fault); then, unless --tier or --fault narrows it, what redundancy costs (--redundancy-cost)",
  })
  .option('redundancy-cost', {
    type: 'boolean',
    default: false,
    describe:
      'only what redundancy costs: the full path and the lab at rest on the running (redundant) lab, on the single topology made in place (--single), and on the redundant again (about 15 minutes: hosts set aside, made and provisioned, then put back)',
  })
  .option('single', {
    type: 'string',
    default: SINGLE_TOPOLOGY,
    describe: 'with --redundancy-cost or --ha: the single topology to compare with',
  })
  .option('rounds', {
    type: 'number',
    default: 5,
    describe: 'with --ha: rounds of the matrix (median and worst); with --esp-lookup: rounds of the comparison',
  })
  .option('tier', { type: 'string', describe: 'with --ha: one pair alone, by its role (e.g. proxy)' })
  .option('fault', { type: 'string', choices: HOST_FAULTS, describe: 'with --ha: one fault alone' })
  .option('devices-curve', {
    type: 'boolean',
    default: false,
    describe:
      'only the devices curve: an open-loop load on the full path, the offered rate doubled until the lab no longer keeps up, one reading per request and batches (minutes)',
  })
  .option('max-rate', {
    type: 'number',
    default: 51200,
    describe: 'the devices curve: no point beyond this many offered readings per second',
  })
  .option('backends-curve', {
    type: 'boolean',
    default: false,
    describe:
      'only the backends curve: every backend capped (--cap), more added as data up to --backends, the full path with 1 to all (minutes: containers made and provisioned, then removed)',
  })
  .option('backends', { type: 'number', default: 4, describe: 'the backends curve: up to this many backends' })
  .option('cap', { type: 'number', default: 0.1, describe: "the backends curve: each backend's share of a core" })
  .option('sites-curve', {
    type: 'boolean',
    default: false,
    describe:
      "only the sites curve: a site farm added as data (one container, each site its own address, certificate and LAN), the hub's bring-up, memory, idle CPU, restarts and CPU per reading against --sites (tens of minutes at 1000)",
  })
  .option('sites', {
    type: 'string',
    default: '1,10,50,100,250,500,1000',
    describe: 'the sites curve: the numbers of sites, comma-separated, growing',
  })
  .option('esp-lookup', {
    type: 'boolean',
    default: false,
    describe:
      "only kernel ESP's lookups (VM gateways: LAB_VM_ROLES=gateway): the hub's CPU per 1000 readings of the lab's site with --other-sites' SAs and policies in its kernel, in turn with none, --rounds times (minutes)",
  })
  .option('other-sites', {
    type: 'string',
    default: '0,1000',
    describe:
      "with --esp-lookup: the numbers of other sites' SAs and policies, comma-separated, growing (0 is the reference)",
  })
  .option('label', { type: 'string', default: 'lab benchmark', describe: 'a name for this run in the report' })
  .option('out', { type: 'string', describe: 'folder for the report (default bench/results/<time>)' })
  .check((a) => {
    for (const k of ['runs', 'duration', 'devices', 'concurrency', 'tunnel-seconds'] as const) {
      if (!(a[k] > 0) || !Number.isFinite(a[k])) throw new Error(`--${k} must be a positive number; got ${a[k]}`)
    }
    if (!Number.isInteger(a.rounds) || a.rounds < 1 || a.rounds > 20)
      throw new Error(`--rounds must be a whole number from 1 to 20; got ${a.rounds}`)
    if (!Number.isInteger(a.backends) || a.backends < 2 || a.backends > 8)
      throw new Error(`--backends must be a whole number from 2 to 8; got ${a.backends}`)
    if (!(a.cap >= 0.01 && a.cap <= 4) || Math.round(a.cap * 100) !== a.cap * 100)
      throw new Error(`--cap must be a share of a core from 0.01 to 4, in hundredths; got ${a.cap}`)
    if (!(a['max-rate'] >= 100 && a['max-rate'] <= 200_000))
      throw new Error(`--max-rate must be from 100 to 200000 readings per second; got ${a['max-rate']}`)
    const others = String(a['other-sites']).split(',').map(Number)
    if (
      !others.every((n, i) => Number.isInteger(n) && n >= 0 && n <= 30000 && (i === 0 || n > others[i - 1])) ||
      others.length < 2
    )
      throw new Error(
        `--other-sites must be two or more growing whole numbers from 0 to 30000, comma-separated; got ${a['other-sites']}`,
      )
    const sites = String(a.sites).split(',').map(Number)
    if (!sites.every((n, i) => Number.isInteger(n) && n >= 1 && n <= 2000 && (i === 0 || n > sites[i - 1])))
      throw new Error(`--sites must be growing whole numbers from 1 to 2000, comma-separated; got ${a.sites}`)
    if (a.runs > 20 || a.duration > 120 || a.concurrency > 512)
      throw new Error('bounded on purpose: at most 20 runs, 120 s per run and 512 connections')
    return true
  })
  .strict()
  .help()
  .parse()

const o = argv.smoke
  ? { runs: 1, duration: 2, warmup: 0.5, devices: 50, concurrency: 8, tunnelSeconds: 1 }
  : {
      runs: argv.runs,
      duration: argv.duration,
      warmup: argv.warmup,
      devices: argv.devices,
      concurrency: argv.concurrency,
      tunnelSeconds: argv['tunnel-seconds'],
    }
// The devices curve: 100 readings/s (25 devices) doubling; two points past the knee;
// the smoke: two points a mode, batches of 10 (batches of 100 at 40/s would send none).
const devicesOptions = (batch: number): DevicesOptions =>
  argv.smoke
    ? {
        startRate: 40,
        maxRate: 80,
        // Both points whatever they show: a second of batches is too short to judge a knee.
        pastKnee: 2,
        duration: 1,
        warmup: 0.5,
        inFlight: 64,
        batch: 10,
        devices: o.devices,
        minRequests: 0,
      }
    : {
        startRate: 100,
        maxRate: argv['max-rate'],
        pastKnee: 2,
        duration: o.duration,
        warmup: o.warmup,
        inFlight: 512,
        batch,
        devices: o.devices,
        minRequests: 50,
      }
const batchOf = (plan: { telemetry: { batch: number } }) => (plan.telemetry.batch > 1 ? plan.telemetry.batch : 100)
const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, '')
const outDir = path.resolve(argv.out ?? path.join(repoRoot, 'bench', 'results', stamp))
const log = (m: string) => console.log(m)

/**
 * A part run alone (--ha, --devices-curve, --backends-curve): report.json, report.md (its
 * Markdown under the run's label), any other files, all under --out; the Markdown printed.
 */
function writePart(json: object, md: string, files: Record<string, string> = {}) {
  fs.mkdirSync(outDir, { recursive: true })
  fs.writeFileSync(path.join(outDir, 'report.json'), JSON.stringify(json, null, 2) + '\n')
  fs.writeFileSync(path.join(outDir, 'report.md'), `# ${argv.label}\n\n${md}`)
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(outDir, name), text)
  log(`\n${md}`)
  log(
    `Report: ${path.relative(process.cwd(), path.join(outDir, 'report.md'))} (and ${['report.json', ...Object.keys(files)].join(', ')})`,
  )
}

/** --ha: the failover matrix alone, with its own report. */
async function haOnly() {
  const started = new Date().toISOString()
  const plan = loadPlan(topologyFile)
  const groups = plan.vrrp.filter((g) => !argv.tier || g.role === argv.tier)
  if (groups.length === 0)
    throw new Error(
      argv.tier
        ? `the topology has no pair of role ${argv.tier}: its pairs are ${plan.vrrp.map((g) => `${g.name} (${g.role})`).join(', ') || 'none'}`
        : 'the topology has no pair (groups in topology.yaml): nothing fails over',
    )
  const lab = await openBenchLab(plan)
  let ha: Awaited<ReturnType<typeof haBench>>
  try {
    log(`Failover matrix: ${groups.map((g) => g.name).join(', ')}, ${argv.rounds} rounds`)
    const faults: HostFault[] | undefined = argv.fault ? [argv.fault] : undefined
    ha = await haBench(lab, { rounds: argv.rounds, groups, ...(faults ? { faults } : {}) }, log)
  } finally {
    await lab.close()
  }
  // The whole matrix asked: what the redundancy it proves costs, too.
  const cost =
    argv.tier || argv.fault ? undefined : await redundancyCost(plan, topologyFile, argv.single, costLoad(plan), log)
  writePart(
    { label: argv.label, ha, ...(cost ? { redundancy_cost: cost } : {}) },
    `Started ${started}.\n\n${haMarkdown(ha)}${cost ? `\n${redundancyMarkdown(cost)}` : ''}`,
  )
  if (ha.readings.missing > 0) log('WARNING: some readings were not stored exactly once: see report.json')
}

/** The load of the cost of redundancy: the ingest's, with the lab's own batch (as the backends curve's). */
const costLoad = (plan: ReturnType<typeof loadPlan>) => ({ ...o, batch: batchOf(plan) })

/** --redundancy-cost: the redundant lab against the single topology, its own report. */
async function redundancyOnly() {
  const plan = loadPlan(topologyFile)
  const cost = await redundancyCost(plan, topologyFile, argv.single, costLoad(plan), log)
  writePart({ label: argv.label, redundancy_cost: cost }, redundancyMarkdown(cost))
}

/** --devices-curve: the open-loop devices curve alone, with its own report and SVG. */
async function devicesOnly() {
  const plan = loadPlan(topologyFile)
  const lab = await openBenchLab(plan)
  try {
    const devices = await devicesBench(lab, devicesOptions(batchOf(plan)), log)
    writePart({ label: argv.label, devices }, devicesMarkdown(devices), {
      'devices.svg': curveSvg(devicesCurve(devices)),
    })
  } finally {
    await lab.close()
  }
}

/** --backends-curve: capped backends added as data, the full path with 1 to all, its own report. */
async function backendsOnly() {
  const plan = loadPlan(topologyFile)
  const load = { ...o, batch: batchOf(plan) }
  const backends = await backendsBench(plan, { total: argv.backends, cpus: argv.cap, load }, log)
  writePart({ label: argv.label, load, backends }, backendsMarkdown(backends), {
    'backends.svg': curveSvg(backendsCurve(backends)),
  })
}

/** --sites-curve: a site farm added as data, the hub against N sites, its own report and SVGs. */
async function sitesOnly() {
  const plan = loadPlan(topologyFile)
  const load = { ...o, runs: 1, batch: batchOf(plan) }
  const sites = await sitesBench(
    plan,
    {
      sites: argv.sites.split(',').map(Number),
      idleS: argv.smoke ? 3 : 15,
      load,
      boundS: argv.smoke ? 60 : 300,
    },
    log,
  )
  const svgs = Object.fromEntries(sitesChartsDrawn(sites).map((c) => [c.file, curveSvg(c.curve)]))
  writePart({ label: argv.label, load, sites }, sitesMarkdown(sites), svgs)
}

/** --esp-lookup: the hub's kernel ESP with other sites' SAs and policies against none, its own report. */
async function espLookupOnly() {
  const plan = loadPlan(topologyFile)
  const load = { ...o, runs: 1, batch: batchOf(plan) }
  const lab = await openBenchLab(plan)
  try {
    const lookup = await espLookupBench(
      lab,
      plan,
      { sites: argv['other-sites'].split(',').map(Number), rounds: argv.rounds, load },
      log,
    )
    writePart({ label: argv.label, load, esp_lookup: lookup }, espLookupMarkdown(lookup))
  } finally {
    await lab.close()
  }
}

try {
  if (argv['esp-lookup']) {
    await espLookupOnly()
    process.exit(0)
  }
  if (argv['sites-curve']) {
    await sitesOnly()
    process.exit(0)
  }
  if (argv['backends-curve']) {
    await backendsOnly()
    process.exit(0)
  }
  if (argv['redundancy-cost']) {
    await redundancyOnly()
    process.exit(0)
  }
  if (argv.ha) {
    await haOnly()
    process.exit(0)
  }
  if (argv['devices-curve']) {
    await devicesOnly()
    process.exit(0)
  }
  const started = Date.now()
  const plan = loadPlan(topologyFile)
  const lab = await openBenchLab(plan)
  let report: Omit<BenchReport, 'bringup' | 'seconds' | 'zero_loss'>
  try {
    const load = {
      runs: o.runs,
      duration: o.duration,
      warmup: o.warmup,
      devices: o.devices,
      concurrency: o.concurrency,
    }
    const m = await machine(lab)
    log(
      `Machine: ${m.cores} cores, ${m.memory_gib.toFixed(1)} GiB, kernel ${m.kernel}, ${m.provider}, IPsec ${m.ipsec_mode}`,
    )
    // A database cluster must not fail over under the run's load (two busy cores): said by its leader and timeline before and after.
    const leaderBefore = plan.services.db?.cluster ? await clusterLeader(lab) : undefined
    const measured = await ingestBench(lab, load, log)
    // With a database cluster: what its strict synchronous replication costs on the full path.
    const ingest = plan.services.db?.cluster
      ? { ...measured, syncRepl: await syncReplicationAB(lab, measured.scenarios[0], load, log) }
      : measured
    const devices = await devicesBench(lab, devicesOptions(batchOf(plan)), log)
    const tunnel = await tunnelBench(lab, o.runs, o.tunnelSeconds, log)
    const datapath = argv.smoke ? undefined : await datapathBench(lab, o.runs, o.tunnelSeconds, vmAccel().accel, log)
    const outbox = await outboxBench(lab, o.runs, argv.smoke ? 0.3 : 1, log)
    const cluster = leaderBefore ? { before: leaderBefore, after: await clusterLeader(lab) } : undefined
    report = {
      label: argv.label,
      started: new Date(started).toISOString(),
      machine: m,
      load,
      ingest,
      devices,
      tunnel,
      datapath,
      outbox,
      ...(cluster ? { cluster } : {}),
    }
  } finally {
    await lab.close()
  }
  const bringup = {
    ...(await reprovisionBench(plan, argv.smoke ? 1 : Math.min(o.runs, 3), log)),
    ...(argv.bringup ? await bringUpBench(log) : {}),
  }
  const all = [
    ...report.ingest.scenarios,
    ...report.ingest.scaling,
    ...(report.ingest.tuning?.scenarios.flatMap((x) => [x.off, x.on]) ?? []),
    ...(report.ingest.upload?.scenarios.flatMap((x) => [x.off, x.on]) ?? []),
    ...(report.ingest.cloudTls?.scenarios.flatMap((x) => [x.off, x.on]) ?? []),
    ...(report.ingest.syncRepl?.scenarios.flatMap((x) => [x.off, x.on]) ?? []),
  ]
  const full: BenchReport = {
    ...report,
    bringup,
    seconds: (Date.now() - started) / 1000,
    zero_loss:
      all.every((s) => s.lost === 0 && s.runs.every((r) => r.check.extra === 0)) &&
      (report.devices?.modes.every((m) => m.points.every((p) => p.lost + p.extra === 0)) ?? true),
  }
  fs.mkdirSync(outDir, { recursive: true })
  fs.writeFileSync(path.join(outDir, 'report.json'), JSON.stringify(full, null, 2) + '\n')
  fs.writeFileSync(path.join(outDir, 'chart.svg'), svgChart(full))
  if (full.devices) fs.writeFileSync(path.join(outDir, 'devices.svg'), curveSvg(devicesCurve(full.devices)))
  fs.writeFileSync(path.join(outDir, 'report.md'), markdown(full))
  log(
    `\nReport: ${path.relative(process.cwd(), path.join(outDir, 'report.md'))} (and report.json, chart.svg, devices.svg), ${full.seconds.toFixed(0)} s in all`,
  )
  if (!full.zero_loss) log('WARNING: some readings were lost or duplicated: see report.json')
} catch (e) {
  console.error(`bench: ${(e as Error).message}`)
  process.exit(1)
}
