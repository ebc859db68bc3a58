// The benchmark's arithmetic and its report, without a lab: medians and spreads,
// percentiles, the ratios the report states, and a chart that draws every figure.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { parse, stringify } from 'yaml'
import { loadPlan } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'
import { efficiencyOf, moreBackends } from '../../scripts/bench/backends.js'
import { backendsMarkdown, devicesMarkdown, svgChart, markdown, type BenchReport } from '../../scripts/bench/report.js'
import { figure, show } from '../../scripts/bench/stats.js'
import { percentile } from '../../services/lib/stats.js'
import { haMarkdown, longestStallSql } from '../../scripts/bench/ha.js'
import { devicesCurve, kneeOf } from '../../scripts/bench/devices.js'
import { procCpu, tierCpu, tiersDuring } from '../../scripts/bench/cpu.js'
import { curveSvg } from '../../scripts/bench/curve.js'

t.test('median and spread', async (t) => {
  t.same(figure([3, 1, 2]), { median: 2, min: 1, max: 3, runs: [3, 1, 2] })
  t.equal(figure([4, 1, 2, 3]).median, 2.5)
  t.equal(show(figure([1200, 1300, 1250])), '1250 (1200 to 1300)')
  t.equal(show(figure([5.55]), 1), '5.5')
  t.ok(Number.isNaN(figure([]).median))
})

t.test('nearest-rank percentiles', async (t) => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1)
  t.same([percentile(v, 50), percentile(v, 99), percentile(v, 100), percentile([7], 99)], [50, 99, 100, 7])
})

const scenario = (id: string, backends: number, rps: number[], lost = 0) => ({
  id,
  title: id,
  from: 'iot-client',
  url: 'http://x',
  backends,
  lost,
  runs: rps.map((r) => ({
    acked: r * 6,
    check: { acked: r * 6, stored: r * 6 - lost, lost, extra: 0, unacked: 0, duplicates_answered: 0 },
  })) as never,
  readings_per_s: figure(rps),
  p50_ms: figure(rps.map((r) => 10000 / r)),
  p99_ms: figure(rps.map((r) => 30000 / r)),
})

const report: BenchReport = {
  label: 'unit',
  started: '2026-11-25T00:00:00Z',
  seconds: 100,
  machine: {
    cores: 2,
    memory_gib: 24,
    cpu: 'cpu',
    kernel: 'k',
    provider: 'lxc',
    ipsec_mode: 'libipsec',
    hosts: 7,
    node_on_hosts: 'v18',
    nginx: '1.22',
    postgresql: '15',
    strongswan: '5.9',
  },
  load: { runs: 3, duration: 6, warmup: 1, devices: 500, concurrency: 32 },
  ingest: {
    scenarios: [
      scenario('full', 2, [1000, 1100, 900]),
      scenario('tunnel-direct', 1, [2000, 2100, 1900]),
      scenario('lan-direct', 1, [4000, 4100, 3900]),
    ],
    scaling: [scenario('full-1', 1, [800, 850, 750]), scenario('full-2', 2, [1000, 1100, 900])],
    cpu: [{ host: 'gw-iot', process: 'charon-systemd', cpu_s: 5, ms_per_1000_readings: 250 }],
    tuning: {
      name: 'write batching',
      off: 'one by one',
      on: 'group commit',
      scenarios: [
        {
          id: 'lan-direct',
          title: 'lan',
          off: scenario('lan-direct', 1, [2000, 2100, 1900]),
          on: scenario('lan-direct', 1, [5000, 5100, 4900]),
        },
      ],
    },
  },
  tunnel: {
    through_tunnel_mbit: figure([250]),
    without_tunnel_mbit: figure([16000]),
    crypto_one_core_mbit: figure([25000]),
    packet_bytes: 1400,
    ipsec_mode: 'libipsec',
  },
  bringup: { reprovision_s: figure([5, 6, 5.5]), reprovision_changed: 0 },
  zero_loss: true,
}

t.test('the report states the figures and the ratios', async (t) => {
  const md = markdown(report)
  t.match(md, '| 2 | 24.0 GiB | cpu | k | lxc | libipsec | 7 |')
  t.match(md, 'Readings lost or duplicated, all runs: none.')
  t.match(md, /full path carries 50\.0 % of the readings per second of the tunnel straight to one backend/)
  t.match(md, /through the tunnel carries 50\.0 % of the same from inside the cloud LAN/)
  t.match(md, '| 1 | 800 (750 to 850) |')
  t.match(md, /The tunnel reaches 1\.56 % of the path without it and 1\.00 % of what one core can encrypt/)
  t.match(md, 'not measured in this run')
  t.match(md, '| lan-direct | readings/s | 2000 (1900 to 2100) | 5000 (4900 to 5100) | +150 % |')
  t.match(md, '| lan-direct | p50 ms | 5.0 (4.8 to 5.3) | 2.0 (2.0 to 2.0) | -60 % |')
  t.match(markdown({ ...report, zero_loss: false }), 'SOME (see the JSON)')
  t.notMatch(md, /database cluster/, 'without a cluster: no line about one')
  const steady = { before: 'database-3 on timeline 2', after: 'database-3 on timeline 2' }
  t.match(markdown({ ...report, cluster: steady }), /timeline 2 after: no failover under their load\./)
  t.match(
    markdown({ ...report, cluster: { ...steady, after: 'database-1 on timeline 3' } }),
    /\*\*it failed over under their load\*\*/,
  )
})

t.test('the chart draws a bar per figure, with whiskers where runs differ', async (t) => {
  const svg = svgChart(report)
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  // 3 paths + 2 scaling points + (3 paths + 1 scaling point) × p50 and p99.
  t.equal((svg.match(/<rect x=/g) ?? []).length - 2 /* legend */, 3 + 2 + 8)
  t.match(svg, /<title>1 backend readings\/s: 800 \(750 to 850\)<\/title>/)
  t.match(svg, '1 backend</text>')
})

t.test('kernel ESP against userspace ESP: figures, the ratio, and what emulation means', async (t) => {
  const datapath = {
    kernel_mbit: figure([90, 100, 110]),
    libipsec_mbit: figure([40, 50, 60]),
    no_tunnel_mbit: figure([1000]),
    accel: 'tcg',
  }
  const md = markdown({ ...report, datapath })
  t.match(md, '| kernel ESP (XFRM) | 100 (90 to 110) |')
  t.match(md, '| kernel-libipsec (userspace ESP in UDP) | 50 (40 to 60) |')
  t.match(md, 'Kernel ESP carries 2.00 times what userspace ESP does, and 10.0 % of the link without a tunnel.')
  t.match(md, /only these ratios mean something, not the figures/)
  t.notMatch(
    markdown({ ...report, datapath: { ...datapath, accel: 'kvm' } }),
    /only these ratios mean something/,
    'with KVM the figures stand for themselves',
  )
  t.notMatch(
    md.replace(/## IPsec data paths[\s\S]*/, ''),
    /kernel-libipsec \(userspace/,
    'no section without the figures',
  )
  t.notMatch(markdown(report), /## IPsec data paths/)
})

t.test(
  "--ha's table: a row per pair, fault and member, median / worst; what was not stored exactly once",
  async (t) => {
    const md = haMarkdown({
      rounds: 5,
      seconds: 612,
      cells: [
        {
          group: 'proxy',
          fault: 'stop',
          member: 'active',
          stall: figure([3.3, 3.4, 3.2, 3.6, 3.3]),
          takeover: figure([3.1, 3.2, 3.3, 3.1, 3.2]),
        },
        { group: 'proxy', fault: 'stop', member: 'standby', stall: figure([0.3, 0.4, 0.3, 0.3, 0.5]) },
      ],
      readings: { taken: 4800, missing: 0 },
    })
    t.match(md, /## Failover \(npm run bench -- --ha\), 5 rounds, 612 s/)
    t.match(md, '| proxy | stop | active | 3.3 / 3.6 | 3.2 / 3.3 |')
    t.match(md, '| proxy | stop | standby | 0.3 / 0.5 | - |', 'no takeover when the standby fails')
    t.match(md, 'Readings the client took during the run: 4800; not stored exactly once: 0.')
  },
)

t.test('the stall query counts the first gap from the window start, and quotes device ids', async (t) => {
  const q = longestStallSql('2026-12-02 18:00:00+00', ['iot-client-01', "o'brien"])
  t.match(q, "coalesce(lag(received_at) OVER (ORDER BY received_at), '2026-12-02 18:00:00+00'::timestamptz)")
  t.match(q, "device_id IN ('iot-client-01','o''brien')")
})

t.test(
  "the database's replication modes the bench alternates: asynchronous, and the provisioned strict one",
  async (t) => {
    const { replicationSettings } = await import('../../scripts/bench/sync-replication.js')
    t.same(replicationSettings('off'), { synchronous_mode: false, synchronous_mode_strict: false })
    t.same(replicationSettings('on'), { synchronous_mode: true, synchronous_mode_strict: true }, 'as provisioned')
  },
)

t.test('the devices curve: CPU per tier, the knee, what was busiest past it, the report', async (t) => {
  const roles: Record<string, string> = {
    'iot-client': 'iot-client',
    'proxy-1': 'proxy',
    'backend-1': 'backend',
    'backend-2': 'backend',
  }
  const before = new Map([
    ['backend-1 node', 10],
    ['backend-2 node', 20],
    ['proxy-1 nginx', 5],
  ])
  const after = new Map([
    ['backend-1 node', 14],
    ['backend-2 node', 23],
    ['proxy-1 nginx', 6],
    ['stray-host charon', 2],
  ])
  t.same(
    tierCpu((h) => roles[h], before, after, 10),
    [
      { tier: 'backend', cores: 0.7 },
      { tier: 'stray-host', cores: 0.2 },
      { tier: 'proxy', cores: 0.1 },
    ],
    "a tier's cores: its hosts' CPU seconds over the wall seconds; a host of no known role stands for itself",
  )
  const point = (offered: number, accepted: number, busiest: string, cores: number) => ({
    offered_per_s: offered,
    devices: offered / 4,
    accepted_per_s: accepted,
    p50_ms: 20,
    p99_ms: 80,
    shed: 0,
    failed: 0,
    lost: 0,
    extra: 0,
    tiers: [
      { tier: busiest, cores },
      { tier: 'proxy', cores: 0.2 },
    ],
  })
  const one = {
    name: 'one reading per request',
    batch: 1,
    points: [point(100, 100, 'backend', 0.2), point(200, 197, 'backend', 0.4), point(400, 250, 'backend', 1.3)],
  }
  const k = kneeOf(one, 2)
  t.equal(k.knee?.offered_per_s, 200, 'the knee: the last point accepted within 5 % of the offer')
  t.same(
    k.saturation,
    { at: 400, tier: 'backend', tier_cores: 1.3, all_cores: 1.5, machine_cores: 2 },
    'past it, the busiest tier and the cores in use',
  )
  t.same(
    kneeOf({ points: [point(100, 100, 'backend', 0.2)] }, 2).saturation,
    undefined,
    'kept up everywhere: no saturation named',
  )
  t.equal(
    kneeOf({ points: [point(100, 50, 'backend', 0.2)] }, 2).knee,
    undefined,
    'not even the first point kept up: no knee',
  )

  const many = {
    name: 'batches of 100',
    batch: 100,
    points: [point(100, 100, 'proxy', 0.1), point(3200, 3150, 'backend', 1.0)],
  }
  const report = {
    modes: [
      { ...one, ...k },
      { ...many, ...kneeOf(many, 2) },
    ],
    knee_ratio: 16,
  }
  const md = devicesMarkdown(report)
  t.match(md, /\| one reading per request \| 400 \| 100 \| 250 \|/, 'a row per point')
  t.match(
    md,
    /knee at 200 readings\/s offered \(50 devices\).*busiest tier is backend \(1\.3 cores\), 1\.5 of the machine's 2 cores/,
  )
  t.match(md, /batches of 100: knee at 3200 .*kept up at every point measured/)
  t.match(md, /16 times \(the goal: at least 10\)/)
  const svg = curveSvg(devicesCurve(report))
  t.match(svg, /knee 200\/s \(backend 1\.3 cores\)/, 'the chart marks each knee with what saturates')
})

t.test('backends added as data: named and addressed after the last, every one capped', async (t) => {
  const plan = loadPlan(topologyFile)
  const raw = parse(fs.readFileSync(topologyFile, 'utf8')) as Parameters<typeof moreBackends>[0]
  const had = plan.hosts.filter((h) => h.role === 'backend')
  const { raw: bigger, added } = moreBackends(raw, plan, had.length + 2, 0.1)
  t.same(
    added,
    [3, 4].map((i) => had[0].name.replace(/\d+$/, String(i))),
    'the next names',
  )
  t.notOk(raw.hosts[added[0]], 'the topology read is not changed')
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'more-backends-')), 'topology.yaml')
  t.teardown(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
  fs.writeFileSync(file, stringify(bigger))
  const p = loadPlan(file)
  t.same(
    p.hosts.filter((h) => h.role === 'backend').map((h) => [h.name, h.limits.cpus]),
    [...had.map((h) => h.name), ...added].map((n) => [n, 0.1]),
    'a valid topology: every backend capped at a tenth of a core',
  )
  t.equal(p.services.backends.length, had.length + 2, 'and nginx would balance over all of them')
  // Taken addresses are skipped: the one after the last backend's, given to another host.
  const last = raw.hosts[had.at(-1)!.name].interfaces
  const [net, addr] = Object.entries(last)[0]
  const nextAddr = addr.replace(/\d+$/, (d) => String(Number(d) + 1))
  const squat = {
    ...raw,
    hosts: {
      [had[0].name.replace(/\d+$/, '0')]: {
        role: 'backend',
        interfaces: Object.fromEntries(
          Object.entries(last).map(([n, a]) => [
            n,
            n === net ? nextAddr : a.replace(/\d+$/, (d) => String(Number(d) + 50)),
          ]),
        ),
      },
      ...raw.hosts,
    },
  }
  const squatPlanFile = path.join(path.dirname(file), 'squat.yaml')
  fs.writeFileSync(squatPlanFile, stringify(squat))
  const after = moreBackends(squat, loadPlan(squatPlanFile), loadPlan(squatPlanFile).services.backends.length + 1, 0.1)
  t.not(after.raw.hosts[after.added[0]].interfaces[net], nextAddr, `${nextAddr} is taken: the next free one instead`)
  t.throws(() => moreBackends(raw, plan, 1, 0.1), /already has 2/)
  // More backends than the management network has addresses: refused, naming the first that has none.
  t.throws(() => moreBackends(raw, plan, 300, 0.1), /network \w+ \([\d./]+\) has no free address for backend-\d+/)
})

t.test('scaling efficiency: n backends over n times one', async (t) => {
  t.equal(
    efficiencyOf([
      { backends: 1, readings_per_s: 100 },
      { backends: 2, readings_per_s: 190 },
      { backends: 4, readings_per_s: 340 },
    ]),
    0.85,
  )
  t.equal(efficiencyOf([{ backends: 1, readings_per_s: 100 }]), undefined, 'one point: nothing to say')
  t.equal(
    efficiencyOf([
      { backends: 2, readings_per_s: 100 },
      { backends: 3, readings_per_s: 150 },
    ]),
    undefined,
    'no single backend measured',
  )
  const md = backendsMarkdown({
    cpus_each: 0.1,
    batch: 100,
    points: [1, 2, 3, 4].map((k) => ({
      backends: k,
      readings_per_s: 100 * k,
      p50_ms: 10,
      p99_ms: 30,
      lost: 0,
      tiers: [{ tier: 'backend', cores: 0.1 * k }],
    })),
    fit: { slope: 100, intercept: 0, r2: 1, n: 4 },
    efficiency: 1,
    busiest: { tier: 'backend', cores: 0.4, backends_of_cap: 1 },
  })
  t.match(md, /\| 4 \| 400 \| 10 \| 30 \| 0 \| backend 0\.4 \|/)
  t.match(md, /100 readings\/s per backend added/)
  t.match(md, /4 backends carry 4\.00 times one \(100 %; the goal: 80 %\)/)
  t.match(md, /the backends used 100 % of their caps/)
})

t.test("cores per tier during a load, with the load generator's own CPU added to its host's tier", async (t) => {
  // /proc/<pid>/stat as cpuSample reads it: utime and stime (ticks of 1/100 s) are fields 14 and 15.
  const stat = (comm: string, ticks: number) => `1 (${comm}) S ${Array(10).fill(0).join(' ')} ${ticks} 0`
  let calls = 0
  const lab = {
    plan: {
      hosts: [
        { name: 'iot-client', role: 'iot-client' },
        { name: 'backend-1', role: 'backend' },
      ],
    },
    // Before: nothing used; after: backend-1's node 100 ticks (1 s), iot-client's shell 10 ticks.
    sh: async (host: string) => {
      calls++
      const after = calls > 2
      return {
        code: 0,
        stderr: '',
        stdout: host === 'backend-1' ? stat('node', after ? 100 : 0) : stat('bash', after ? 10 : 0),
      }
    },
  } as unknown as Parameters<typeof tiersDuring>[0]
  const { result, tiers } = await tiersDuring(
    lab,
    'iot-client',
    async () => {
      await new Promise((r) => setTimeout(r, 1000))
      return { cpu_s: 1 }
    },
    (x) => x.cpu_s,
  )
  t.same(result, { cpu_s: 1 })
  t.equal(tiers[0].tier, 'iot-client', 'the generator reported 1 s of its own: its tier is the busiest')
  t.ok(tiers[0].cores > 1 && tiers[0].cores < 1.2, `about 1.1 cores (0.1 seen in /proc, 1 reported): ${tiers[0].cores}`)
  t.equal(tiers[1].tier, 'backend')
  t.ok(tiers[1].cores > 0.85 && tiers[1].cores <= 1, `backend about 1 core: ${tiers[1].cores}`)
})

t.test("a process's CPU from its /proc stat line, whatever its name holds", async (t) => {
  // pid (comm) state ppid ... utime (14th field) stime (15th): 250 + 30 ticks.
  const rest = 'S 1 10 10 0 -1 4194560 500 0 0 0 250 30 0 0 20 0 16 0 100 0 0'
  t.same(procCpu(`812 (charon-systemd) ${rest}`), { name: 'charon-systemd', cpu_s: 2.8 })
  t.same(procCpu(`9 (a (b) c) ${rest}\n`), { name: 'a (b) c', cpu_s: 2.8 }, 'spaces and parentheses in the name')
  t.equal(procCpu('not a stat line'), undefined)
})
