// Redundancy as data: a topology group resolves into one VRRP instance (plan.vrrp), its
// members get keepalived with their peers and priorities, the firewall admits VRRP from
// the peers alone, and the service listens on the virtual address before it holds it.
// The single topology (topology.single.yaml) has none of it and still resolves.
import path from 'node:path'
import t from 'tap'
import { repoRoot, topologyFile } from '../../provision/paths.js'
import { loadPlan, vrrpGroupOf, type Host } from '../../provision/plan.js'
import { rolesFor } from '../../provision/roles/index.js'
import { proxy } from '../../provision/roles/proxy.js'
import { keepalivedConf, vrrpInput, vrrpSysctl } from '../../provision/roles/vrrp.js'
import type { Context } from '../../provision/runner.js'

const plan = loadPlan(topologyFile)
const single = loadPlan(path.join(repoRoot, 'topology.single.yaml'))
const host = (p: typeof plan, name: string) => p.hosts.find((h) => h.name === name)!
const ctx = (h: Host, p = plan) =>
  ({
    plan: p,
    self: h,
    facts: { interfaceOf: Object.fromEntries(h.interfaces.map((i) => [i.network, `eth-${i.network}`])) },
  }) as unknown as Context

t.test('the proxy pair resolves into one VRRP instance: priorities in order, unicast addresses', async (t) => {
  t.same(plan.vrrp, [
    {
      name: 'proxy',
      role: 'proxy',
      vrid: 1,
      addresses: [{ network: 'cloud', address: '10.20.0.10', prefix: 24 }],
      network: 'cloud',
      members: [
        { host: 'proxy-1', priority: 150, address: '10.20.0.11' },
        { host: 'proxy-2', priority: 140, address: '10.20.0.12' },
      ],
    },
  ])
  t.equal(vrrpGroupOf(plan, 'proxy-2')?.name, 'proxy')
  t.equal(vrrpGroupOf(plan, 'backend-1'), undefined, 'a backend is in no group')
  const dnat = plan.networks.find((n) => n.oldServer)!.oldServer!
  t.same([dnat.host, dnat.target], ['proxy', '10.20.0.10'], 'the old server address leads to the virtual address')
})

t.test("keepalived: each member's instance names its peers, never itself; no preemption", async (t) => {
  for (const [name, peer, priority] of [
    ['proxy-1', '10.20.0.12', 150],
    ['proxy-2', '10.20.0.11', 140],
  ] as const) {
    const h = host(plan, name)
    const conf = keepalivedConf(ctx(h), proxy.health!(ctx(h)))
    t.match(
      conf,
      new RegExp(`unicast_src_ip ${h.addresses.cloud}\\n\\s+unicast_peer \\{\\n\\s+${peer}\\n\\s+\\}`),
      name,
    )
    t.match(conf, `priority ${priority}\n`)
    t.match(conf, /state BACKUP\n\s+nopreempt\n/, 'every member starts as a backup and none takes the address back')
    t.match(conf, '10.20.0.10/24 dev eth-cloud', 'the virtual address on the NIC the facts name')
    t.match(conf, /script "\/usr\/bin\/curl -fsS -o \/dev\/null --max-time 1 http:\/\/127\.0\.0\.1:8081\/nginx_status"/)
    t.same(vrrpInput(ctx(h)), [`ip saddr { ${peer} } ip protocol vrrp accept comment "VRRP adverts from group proxy"`])
    t.same(vrrpSysctl(ctx(h)), { 'net.ipv4.ip_nonlocal_bind': '1' })
    t.same(
      rolesFor(h, plan).map((r) => r.name),
      ['common', 'proxy', 'vrrp'],
    )
  }
  const b = host(plan, 'backend-1')
  t.same(vrrpInput(ctx(b)), [], 'no VRRP for a host outside a group')
  t.same(vrrpSysctl(ctx(b)), {})
  t.same(
    rolesFor(b, plan).map((r) => r.name),
    ['common', 'backend'],
  )
  t.throws(() => keepalivedConf(ctx(b), { service: 'x', check: 'true' }), /backend-1 is in no group/)
})

t.test('the single topology: one proxy on its own address, no keepalived anywhere', async (t) => {
  t.same(single.vrrp, [])
  t.equal(single.services.proxy!.address, '10.20.0.10')
  t.same(single.services.proxy!.members, [{ host: 'proxy', address: '10.20.0.10' }])
  t.same(
    rolesFor(host(single, 'proxy'), single).map((r) => r.name),
    ['common', 'proxy'],
  )
  t.same(vrrpSysctl(ctx(host(single, 'proxy'), single)), {})
  t.same(
    single.hosts.map((h) => h.name).filter((n) => !plan.hosts.some((h) => h.name === n)),
    ['proxy'],
    'the same lab but for the pair',
  )
})
