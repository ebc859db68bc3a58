// The lab's networks are honest: the sites are joined only by the tunnel (what happens
// when it is down is in vpn.ts), and the management network joins no two hosts. Each refusal has a control beside
// it that succeeds, so a failure means isolation, not a broken probe.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import t from 'tap'
import type { Host } from '../../provision/plan.js'
import { waitForTunnel } from '../lib/ipsec.js'
import { openLab } from '../lib/lab.js'
import { assertReach, can, cannot } from '../lib/probe.js'

const lab = await openLab(t)
if (lab) {
  const sh = (host: string, command: string) => lab.sh(host, command)
  const [client] = lab.byRole('iot-client')
  const iotGw = lab.plan.hosts.find(
    (h) => h.name === lab.plan.networks.find((n) => n.name === client.interfaces[1].network)!.gateway,
  )!
  const cloudHosts = lab.plan.hosts.filter((h) => h.addresses.cloud && h.role !== 'gateway')
  const proxyAddr = lab.plan.services.proxy!.address

  t.test('the IoT client reaches its own LAN and its gateway (control)', async (t) => {
    await assertReach(
      t,
      sh,
      [can(client.name, iotGw.addresses.iot, undefined, `${client.name} pings ${iotGw.name} on the iot LAN`)],
      1,
    )
    const route = (await lab.sh(client.name, `ip route get ${proxyAddr}`)).stdout
    t.match(
      route,
      new RegExp(`via ${iotGw.addresses.iot.replace(/\./g, '\\.')} `),
      'the cloud LAN is routed to the IoT gateway',
    )
  })

  t.test('the sites are joined only by the tunnel: no gateway routes between them outside it', async (t) => {
    for (const tunnel of lab.plan.vpn?.tunnels ?? []) {
      await waitForTunnel(lab, tunnel)
      for (const [gw, remote] of [
        [tunnel.site, tunnel.hubSubnets],
        [tunnel.hub, tunnel.siteSubnets],
      ] as const) {
        const main = (await lab.sh(gw, 'ip -4 route show table main')).stdout
        for (const net of remote)
          t.notMatch(
            main,
            new RegExp(`^${net.replace(/[./]/g, '\\$&')} `, 'm'),
            `${gw}'s main table has no route to ${net}`,
          )
        const mode = lab.facts(gw).ipsecMode
        const get = (await lab.sh(gw, `ip route get ${remote[0].replace(/0\/\d+$/, '1')}`)).stdout
        if (mode === 'libipsec')
          t.match(get, / dev ipsec0 /, `${gw} reaches ${remote[0]} only through ipsec0 (the tunnel)`)
      }
    }
    const gwCloud = lab.byRole('gateway').find((g) => g.addresses.cloud)!
    await assertReach(
      t,
      sh,
      [
        cannot(client.name, gwCloud.addresses.inet, undefined, 'the IoT client cannot reach the simulated internet'),
        ...cloudHosts.map((h) => cannot(client.name, h.mgmt.address, undefined, `nor ${h.name}'s management address`)),
      ],
      1,
    )
  })

  t.test('the management network joins no two hosts', async (t) => {
    const pairs: [Host, Host][] = lab.plan.hosts.map((h, i, all) => [h, all[(i + 1) % all.length]])
    const mgmt = lab.plan.networks.find((n) => n.kind === 'management')!
    await assertReach(t, sh, [
      ...pairs.flatMap(([a, b]) => [
        cannot(a.name, b.mgmt.address, undefined, `${a.name} cannot ping ${b.name} over management`),
        cannot(a.name, b.mgmt.address, 22, `${a.name} cannot reach ${b.name}'s SSH over management`),
      ]),
      ...(mgmt.hostAddress
        ? [can(client.name, mgmt.hostAddress, undefined, 'while the provisioning machine answers on it (control)')]
        : []),
    ])
  })

  lab.test(t, 'this machine keeps the lab to its bridges', { bridgesHere: true }, async (t) => {
    for (const net of lab.plan.networks) {
      t.ok(fs.existsSync(`/sys/class/net/${net.bridge}/bridge`), `bridge ${net.bridge} exists`)
    }
    const links = JSON.parse(execFileSync('bridge', ['-d', '-j', 'link', 'show']).toString()) as {
      ifname: string
      master?: string
      isolated?: boolean
    }[]
    const mgmt = lab.plan.networks.find((n) => n.kind === 'management')!
    const ports = links.filter((l) => l.master === mgmt.bridge)
    t.equal(ports.length, lab.plan.hosts.length, 'one management port per host')
    t.same(
      ports.filter((p) => !p.isolated).map((p) => p.ifname),
      [],
      'every management port is isolated',
    )
    const addrs = JSON.parse(execFileSync('ip', ['-j', '-4', 'addr', 'show']).toString()) as {
      ifname: string
      addr_info: { local: string }[]
    }[]
    for (const net of lab.plan.networks) {
      const mine = addrs.find((a) => a.ifname === net.bridge)?.addr_info.map((a) => a.local) ?? []
      t.same(mine, net.hostAddress ? [net.hostAddress] : [], `this machine's addresses on ${net.bridge}`)
    }
    const guard = execFileSync('nft', ['list', 'table', 'inet', `${lab.plan.name}_guard`]).toString()
    t.match(guard, /hook forward/, 'a forward guard keeps this machine from routing into or out of the lab')
  })
}
