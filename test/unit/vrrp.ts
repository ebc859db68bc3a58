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
import { gateway, swanctlVars } from '../../provision/roles/gateway.js'
import { keepalivedConf, vrrpInput, vrrpNotify, vrrpSysctl } from '../../provision/roles/vrrp.js'
import type { Context } from '../../provision/runner.js'

const plan = loadPlan(topologyFile)
const single = loadPlan(path.join(repoRoot, 'topology.single.yaml'))
const host = (p: typeof plan, name: string) => p.hosts.find((h) => h.name === name)!
/** The notify script a member gets (its role's takeover in it), or undefined outside a group. */
const renderVrrpNotify = (c: Context) => {
  const mod = rolesFor(c.self, c.plan).length === 3 ? (c.self.role === 'gateway' ? gateway : proxy) : undefined
  return mod ? vrrpNotify(c, mod.health!(c)) : undefined
}
const ctx = (h: Host, p = plan) =>
  ({
    plan: p,
    self: h,
    facts: { interfaceOf: Object.fromEntries(h.interfaces.map((i) => [i.network, `eth-${i.network}`])) },
  }) as unknown as Context

t.test('the proxy pair resolves into one VRRP instance: priorities in order, unicast addresses', async (t) => {
  t.same(
    plan.vrrp.filter((g) => g.role === 'proxy'),
    [
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
    ],
  )
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
    ['proxy', 'database'],
    'the same lab but for the pairs and the database cluster',
  )
  t.equal(single.services.db!.address, '10.20.0.30', 'one database host, on its own address')
  t.equal(single.services.db!.cluster, undefined, 'no Patroni, no etcd')
  t.same(
    rolesFor(host(single, 'database'), single).map((r) => r.name),
    ['common', 'db'],
  )
  t.same(single.vpn!.tunnels[0].hubMembers, ['gw-cloud'], 'one hub, its own identity')
  t.same(swanctlVars(ctx(host(single, 'gw-cloud'), single)).tunnels[0].local_id, 'gw-cloud.iotlab')
  t.equal(renderVrrpNotify(ctx(host(single, 'gw-cloud'), single)), undefined, 'no keepalived on a single hub')
})

t.test(
  'the hub pair: both addresses in one instance, adverts on the cloud LAN, the hub identity on both',
  async (t) => {
    t.same(
      plan.vrrp.find((g) => g.role === 'gateway'),
      {
        name: 'hub',
        role: 'gateway',
        vrid: 2,
        addresses: [
          { network: 'cloud', address: '10.20.0.1', prefix: 24 },
          { network: 'inet', address: '198.51.100.12', prefix: 24 },
        ],
        network: 'cloud',
        members: [
          { host: 'gw-cloud', priority: 150, address: '10.20.0.2' },
          { host: 'gw-cloud-2', priority: 140, address: '10.20.0.3' },
        ],
      },
    )
    const [tunnel] = plan.vpn!.tunnels
    t.same([tunnel.hub, tunnel.hubMembers, tunnel.hubAddress], ['hub', ['gw-cloud', 'gw-cloud-2'], '198.51.100.12'])
    t.same(
      host(plan, 'backend-1').routes,
      [{ to: '10.10.1.0/24', via: '10.20.0.1', network: 'cloud' }],
      "the cloud reaches the sites through the hub's address, wherever it is",
    )
    t.same(host(plan, 'gw-cloud-2').routes, [], 'a member routes the sites itself (its SAs), never through its peer')
    // The site: its peer is the hub's address and identity, not a member's.
    const site = swanctlVars(ctx(host(plan, 'gw-iot'))).tunnels[0]
    t.same([site.remote_addr, site.remote_id], ['198.51.100.12', 'hub.iotlab'])
    for (const [name, peer] of [
      ['gw-cloud', '10.20.0.3'],
      ['gw-cloud-2', '10.20.0.2'],
    ] as const) {
      const h = host(plan, name)
      const c = ctx(h)
      const hub = swanctlVars(c).tunnels[0]
      t.same([hub.local_addr, hub.local_id, hub.remote_addr], ['198.51.100.12', 'hub.iotlab', '198.51.100.11'], name)
      const conf = keepalivedConf(c, gateway.health!(c))
      t.match(
        conf,
        new RegExp(
          `interface eth-cloud\n[\\s\\S]*unicast_src_ip ${h.addresses.cloud}\n\\s+unicast_peer \{\n\\s+${peer}\n`,
        ),
      )
      t.match(
        conf,
        /10\.20\.0\.1\/24 dev eth-cloud\n\s+198\.51\.100\.12\/24 dev eth-inet\n/,
        'both addresses move together',
      )
      t.match(
        conf,
        /track_file charon \{\n\s+file "\/run\/lab-hub-health"\n\s+weight 0\n/,
        "keepalived tracks the watch's file",
      )
      t.notMatch(conf, /vrrp_script/, 'and runs no check script of its own')
      t.match(renderVrrpNotify(c), /if \[ "\$state" = master \]; then\n\s+\/usr\/local\/lib\/lab\/lab-hub-takeover /)
      t.same(
        rolesFor(h, plan).map((r) => r.name),
        ['common', 'gateway', 'vrrp'],
      )
    }
    t.notMatch(renderVrrpNotify(ctx(host(plan, 'proxy-1'))), /takeover|master \]/, 'a proxy has nothing to take over')
    t.same(
      rolesFor(host(plan, 'gw-iot'), plan).map((r) => r.name),
      ['common', 'gateway'],
      'a site is no member',
    )
  },
)
