// The cost of redundancy is measured by making the single topology in place of the
// redundant one: which hosts are kept, remade, set aside or added is decided from the
// two topology files alone, and two files that are not the same lab are refused.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { loadPlan } from '../../provision/plan.js'
import { repoRoot } from '../../provision/paths.js'
import type { RawTopology } from '../../scripts/bench/topology-copy.js'
import {
  clearOfSetAside,
  redundancyMarkdown,
  SINGLE_TOPOLOGY,
  topologyShift,
  type RedundancyCost,
  type Side,
} from '../../scripts/bench/redundancy-cost.js'
import { figure } from '../../scripts/bench/stats.js'

const labFile = path.join(repoRoot, 'topology.yaml')
const read = (f: string) => parse(fs.readFileSync(f, 'utf8')) as RawTopology
const lab = read(labFile)
const single = read(SINGLE_TOPOLOGY)

t.test('the redundant lab against the single topology: what is kept, remade, set aside and added', async (t) => {
  const shift = topologyShift(lab, single)
  t.same(shift.setAside.sort(), ['database-1', 'database-2', 'database-3', 'gw-cloud-2', 'proxy-1', 'proxy-2'])
  t.same(shift.remade, ['gw-cloud'], 'the hub in both, with its own addresses in the single lab')
  t.same(shift.added.sort(), ['database', 'proxy'])
  t.same(shift.kept.sort(), ['backend-1', 'backend-2', 'gw-iot', 'iot-client', 'monitor'])
  const reordered = structuredClone(single)
  const h = reordered.hosts['gw-iot']
  reordered.hosts['gw-iot'] = { interfaces: h.interfaces, role: h.role }
  t.ok(topologyShift(lab, reordered).kept.includes('gw-iot'), 'the order of a host’s keys does not make it another')
  const capped = structuredClone(single)
  capped.hosts['backend-1'].cpus = 0.5
  t.ok(topologyShift(lab, capped).remade.includes('backend-1'), 'a host with other limits is remade')
})

t.test('two files that are not the same lab are refused, with what differs', async (t) => {
  t.throws(() => topologyShift(lab, { ...single, name: 'other' }), /different labs \(iotlab and other\)/)
  const moved = structuredClone(single)
  ;(moved.networks as Record<string, { cidr: string }>).cloud.cidr = '10.30.0.0/24'
  t.throws(() => topologyShift(lab, moved), /different networks .*10\.30\.0\.0\/24/)
  t.throws(() => topologyShift(lab, lab), /the same hosts: there is nothing to compare/)
})

t.test('a host the single lab makes does not take a management address a member set aside still holds', async (t) => {
  const plan = loadPlan(labFile)
  const shift = topologyShift(lab, single)
  const { raw, moved } = clearOfSetAside(plan, single, shift)
  // topology.single.yaml's proxy has proxy-1's management address (.20).
  t.equal(single.hosts.proxy.interfaces.mgmt, plan.hosts.find((h) => h.name === 'proxy-1')!.mgmt.address)
  t.not(raw.hosts.proxy.interfaces.mgmt, single.hosts.proxy.interfaces.mgmt, 'moved')
  t.match(moved, [
    /^proxy's management address 172\.31\.250\.20 \(held by a member set aside\) moved to 172\.31\.250\.\d+$/,
  ])
  const everyMgmt = [
    ...plan.hosts.map((h) => h.mgmt.address),
    ...Object.entries(raw.hosts)
      .filter(([n]) => shift.remade.includes(n) || shift.added.includes(n))
      .map(([, h]) => h.interfaces.mgmt),
  ]
  const clash = everyMgmt.filter((a, i) => everyMgmt.indexOf(a) !== i)
  // gw-cloud is remade with its own address: the lab's gw-cloud is gone by then.
  t.same(clash, [plan.hosts.find((h) => h.name === 'gw-cloud')!.mgmt.address], 'no other address twice')
  t.equal(raw.hosts.database.interfaces.mgmt, single.hosts.database.interfaces.mgmt, 'a free one is left alone')
  t.equal(single.hosts.proxy.interfaces.mgmt, '172.31.250.20', 'the file read is not changed')
  t.equal(loadPlan(SINGLE_TOPOLOGY).hosts.length, Object.keys(raw.hosts).length)
})

t.test('the report puts the three sides in columns and states the differences', async (t) => {
  const side = (topology: string, rps: number[], p99: number[], cores: number, mib: number, hosts: number): Side => ({
    topology,
    hosts,
    table_rows: 1000,
    full: {
      id: 'full',
      title: topology,
      from: 'iot-client',
      url: 'http://10.10.1.100/readings',
      backends: 2,
      runs: [],
      readings_per_s: figure(rps),
      p50_ms: figure([50]),
      p99_ms: figure(p99),
      lost: 0,
    },
    load: [{ tier: 'db', cores: cores * 3 }],
    rest: { tiers: [{ tier: 'db', cores }], cores, seconds: 20 },
    memory_mib: mib,
  })
  const before = side('redundant', [500, 520], [160, 170], 0.3, 1200, 12)
  const after = side('redundant, again', [510, 530], [150, 180], 0.32, 1220, 12)
  const one = side('single', [540, 560], [140, 150], 0.1, 800, 8)
  const r: RedundancyCost = {
    shift: { kept: [], remade: ['gw-cloud'], setAside: ['proxy-2'], added: ['proxy'] },
    moved: [],
    redundant: [before, after],
    single: one,
    compare: {
      readings_per_s: { redundant: figure([500, 520, 510, 530]), single: one.full.readings_per_s },
      p99_ms: { redundant: figure([160, 170, 150, 180]), single: one.full.p99_ms },
    },
    seconds: 900,
  }
  const md = redundancyMarkdown(r)
  t.match(md, /\| hosts \| 12 \| 8 \| 12 \|/)
  t.match(md, /\| readings stored when the runs began \| 1000 \| 1000 \| 1000 \|/)
  t.match(md, /\| readings\/s \| 510 \(500 to 520\) \| 550 \(540 to 560\) \| 520 \(510 to 530\) \|/)
  t.match(md, /readings\/s -6 %, p99 14 %/, 'medians: 515 against 550 (-6.4 %), 165 against 145 (+13.8 %)')
  t.match(md, /at rest 0\.21 cores and 410 MiB more/)
  t.notMatch(md, /database cluster/, 'no cluster set aside: no line about it')
  const same = { before: 'database-3 on timeline 2', after: 'database-3 on timeline 2' }
  t.match(
    redundancyMarkdown({ ...r, cluster: same }),
    /database-3 on timeline 2 before, database-3 on timeline 2 after: no failover\./,
  )
  t.match(
    redundancyMarkdown({ ...r, cluster: { ...same, after: 'database-1 on timeline 3' } }),
    /after: \*\*it changed\*\*/,
  )
  t.match(md, /Under the load, by tier[^|]*\| tier [^\n]*\n[^\n]*\n\| db \| 0\.90 \| 0\.30 \| 0\.96 \|/)
  t.match(md, /At rest, by tier[^|]*\| tier [^\n]*\n[^\n]*\n\| db \| 0\.30 \| 0\.10 \| 0\.32 \|/)
})
