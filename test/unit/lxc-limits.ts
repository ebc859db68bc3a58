// A container's memory and cpus: taken from the topology only where it sets them (a
// container shares this machine's otherwise), in hundredths of a core, as the cgroup
// keys of this machine's hierarchy; a fraction refused for a host that becomes a VM;
// and the cgroup's files read back as the topology would have said it.
import fs from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { planOf } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'
import type { Machine } from '../../provision/providers.js'
import { cgroupVersion, lxcLimitKeys, parseLimits, withLimitKeys } from '../../scripts/lib/lxc-limits.js'

const noVirt: Machine = { hardwareVirt: false, hasLibvirt: true, hasVirtualbox: false }
const raw = (): any => parse(fs.readFileSync(topologyFile, 'utf8'))
const planWith = (change: (r: any) => void, env: NodeJS.ProcessEnv = {}) => {
  const r = raw()
  change(r)
  return planOf(r, 'topology.yaml', { env, machine: noVirt })
}

t.test('limits are what the topology sets, and nothing where it sets nothing', async (t) => {
  const plan = planWith((r) => {
    r.hosts['backend-1'].cpus = 0.1
    r.hosts['backend-1'].memory = 256
    r.hosts['backend-2'].cpus = 2
  })
  const host = (n: string) => plan.hosts.find((h) => h.name === n)!
  t.same(host('backend-1').limits, { cpus: 0.1, memory: 256 })
  t.same(host('backend-2').limits, { cpus: 2 }, 'cpus alone')
  t.same(host('database-1').limits, {}, 'none given: no limit')
  t.same(
    planWith((r) => (r.hosts['database-1'].cpus = null)).hosts.find((h) => h.name === 'database-1')!.limits,
    {},
    "null (YAML's empty value) is none",
  )
  t.equal(host('database-1').cpus, 1, "a VM's size still has its defaults (1 CPU)")
  t.equal(host('database-1').memory, 512, '(512 MiB)')
})

t.test('cpus in hundredths of a core, above 0', async (t) => {
  for (const ok of [0.01, 0.1, 0.25, 1, 1.5, 4])
    t.doesNotThrow(() => planWith((r) => (r.hosts.monitor.cpus = ok)), `${ok}`)
  for (const bad of [0, -1, 0.125, 0.001, '2', Infinity])
    t.throws(
      () => planWith((r) => (r.hosts.monitor.cpus = bad)),
      /hosts\.monitor\.cpus: must be a number of CPUs above 0, in hundredths at most \(0\.1 is a tenth of a core\)/,
      `${String(bad)} refused`,
    )
})

t.test('a fraction of a CPU on a host that becomes a VM is refused, with the host and the way out', async (t) => {
  t.throws(
    () => planWith((r) => (r.hosts['gw-iot'].cpus = 0.5), { LAB_VM_ROLES: 'gateway' }),
    /^gw-iot: cpus 0\.5 is a fraction of a CPU, which a VM \(libvirt\) cannot have: give it a whole number, or keep gw-iot a container \(.*LAB_VM_ROLES=gateway/,
  )
  t.doesNotThrow(() => planWith((r) => (r.hosts['gw-iot'].cpus = 0.5)), 'the same host as a container')
  t.doesNotThrow(
    () => planWith((r) => (r.hosts['gw-iot'].cpus = 2), { LAB_VM_ROLES: 'gateway' }),
    'a whole number as a VM',
  )
})

t.test("the cgroup keys of this machine's hierarchy", async (t) => {
  // Vagrant appends the keys on every start and the last counts: none is written as none.
  t.same(
    lxcLimitKeys({}, 'v1'),
    [
      ['cgroup.cpu.cfs_period_us', '100000'],
      ['cgroup.cpu.cfs_quota_us', '-1'],
      ['cgroup.memory.limit_in_bytes', '-1'],
    ],
    'no limit: the keys that lift one',
  )
  t.same(lxcLimitKeys({ cpus: 0.1, memory: 256 }, 'v1'), [
    ['cgroup.cpu.cfs_period_us', '100000'],
    ['cgroup.cpu.cfs_quota_us', '10000'],
    ['cgroup.memory.limit_in_bytes', '256M'],
  ])
  t.same(lxcLimitKeys({ cpus: 1.5, memory: 1024 }, 'v2'), [
    ['cgroup2.cpu.max', '150000 100000'],
    ['cgroup2.memory.max', '1024M'],
  ])
  t.same(lxcLimitKeys({ memory: 300 }, 'v2'), [
    ['cgroup2.cpu.max', 'max 100000'],
    ['cgroup2.memory.max', '300M'],
  ])
  t.same(
    lxcLimitKeys({ cpus: 0.07 }, 'v1')[1],
    ['cgroup.cpu.cfs_quota_us', '7000'],
    '0.07 is 7000, not 7000.000000000001',
  )
  const dir = t.testdir({ v2: { 'cgroup.controllers': 'cpu memory' }, v1: { cpu: {}, memory: {} } })
  t.equal(cgroupVersion(`${dir}/v2`), 'v2', 'the unified hierarchy')
  t.equal(cgroupVersion(`${dir}/v1`), 'v1', 'a controller per mount (this machine)')
})

t.test("a cgroup's files read back as the topology says it", async (t) => {
  const unlimitedV1 = { quota: '-1', period: '100000', memory: '9223372036854771712' }
  t.same(parseLimits('v1', unlimitedV1), {}, 'v1: no quota, the page counter maximum')
  t.same(parseLimits('v1', { quota: '10000', period: '100000', memory: '268435456' }), { cpus: 0.1, memory: 256 })
  t.same(parseLimits('v2', { cpuMax: 'max 100000', memory: 'max' }), {}, 'v2: max')
  t.same(parseLimits('v2', { cpuMax: '150000 100000', memory: '1073741824' }), { cpus: 1.5, memory: 1024 })
  t.throws(() => parseLimits('v1', { quota: '10000', period: '', memory: 'max' }), /a CPU limit that is no number/)
  t.throws(() => parseLimits('v2', { cpuMax: 'max', memory: 'lots' }), /a memory limit that is no number: lots/)
})

t.test(
  "a container's config gets the limit keys once, in vagrant-lxc's block, and is left alone when it has them",
  async (t) => {
    const made = [
      'lxc.include = /usr/share/lxc/config/common.conf',
      '# VAGRANT-BEGIN',
      'lxc.net.0.type=veth',
      ...lxcLimitKeys({}, 'v1').map(([k, v]) => `lxc.${k}=${v}`),
      'lxc.uts.name=backend-1',
      '# VAGRANT-END',
      '',
    ].join('\n')
    t.equal(withLimitKeys(made, lxcLimitKeys({}, 'v1')), made, 'as vagrant-lxc wrote it: unchanged')
    const spaced = made.replace('lxc.cgroup.cpu.cfs_quota_us=-1', 'lxc.cgroup.cpu.cfs_quota_us = -1')
    t.equal(withLimitKeys(spaced, lxcLimitKeys({}, 'v1')), spaced, 'in any spacing: unchanged')
    const capped = withLimitKeys(made, lxcLimitKeys({ cpus: 0.1, memory: 256 }, 'v1'))
    t.same(capped.split('\n'), [
      'lxc.include = /usr/share/lxc/config/common.conf',
      '# VAGRANT-BEGIN',
      'lxc.net.0.type=veth',
      'lxc.uts.name=backend-1',
      'lxc.cgroup.cpu.cfs_period_us=100000',
      'lxc.cgroup.cpu.cfs_quota_us=10000',
      'lxc.cgroup.memory.limit_in_bytes=256M',
      '# VAGRANT-END',
      '',
    ])
    t.equal(withLimitKeys(capped, lxcLimitKeys({ cpus: 0.1, memory: 256 }, 'v1')), capped, 'then unchanged')
    t.equal(withLimitKeys(capped, lxcLimitKeys({}, 'v1')).match(/cfs_quota_us/g)?.length, 1, 'lifted: one quota line')
    t.match(
      withLimitKeys('lxc.uts.name=x\n', lxcLimitKeys({}, 'v2')),
      /^lxc\.uts\.name=x\nlxc\.cgroup2\.cpu\.max=max 100000\nlxc\.cgroup2\.memory\.max=max\n$/,
      'no block: at the end',
    )
  },
)
