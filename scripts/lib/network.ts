// The lab's networks, whatever the provider: one Linux bridge per topology network,
// created before `vagrant up` (parallel machines would race to create them); lxc
// containers and libvirt VMs of one lab join the same bridges. When the lab has VMs,
// libvirt owns the management bridge (its DHCP gives VMs their management address;
// scripts/lib/libvirt.ts); containers join it all the same.
// Only the management bridge carries an address of this machine; the others are
// plain L2 segments, so this machine cannot route between the lab's networks. An
// nftables table also forbids it to forward anything to or from a lab bridge,
// whatever net.ipv4.ip_forward says: the lab never reaches the uplink.
import fs from 'node:fs'
import { $ } from 'zx'
import type { Plan } from '../../provision/plan.js'
import { ensureMgmtNetwork } from './libvirt.js'

const q = { quiet: true }

export function labBridges(t: Plan): string[] {
  return t.networks.map((n) => n.bridge)
}

/** Bridges on this machine that belong to a lab of this name (current or stale). */
export function existingBridges(t: Plan): string[] {
  return fs
    .readdirSync('/sys/class/net')
    .filter((n) => n.startsWith(`${t.name}-`) && fs.existsSync(`/sys/class/net/${n}/bridge`))
}

const guardTable = (t: Plan) => `${t.name}_guard`

/**
 * The guard table. br_netfilter may be loaded (it is on the machines we build on), and
 * then frames bridged inside one lab network also pass this forward hook, with the
 * bridge as both input and output: those must pass. Anything routed by this machine
 * into, out of or between lab networks has different interfaces and is dropped. On the
 * management network even a same-bridge route is dropped: it would join two hosts
 * whose ports are isolated. Replaced atomically (add, delete, define in one batch).
 */
export function forwardGuard(t: Plan): string {
  const rules = t.networks.map((n) =>
    n.kind === 'management'
      ? `    iifname "${n.bridge}" counter drop comment "management joins no two hosts"\n    oifname "${n.bridge}" counter drop`
      : `    iifname "${n.bridge}" oifname != "${n.bridge}" counter drop comment "${n.name} is only bridged, never routed"\n    oifname "${n.bridge}" iifname != "${n.bridge}" counter drop`,
  )
  return (
    [
      `table inet ${guardTable(t)}`,
      `delete table inet ${guardTable(t)}`,
      `table inet ${guardTable(t)} {`,
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      ...rules,
      '  }',
      '}',
    ].join('\n') + '\n'
  )
}

export async function networksUp(
  t: Plan,
  log: (m: string) => void = console.log,
  opts: { libvirtMgmt?: boolean } = {},
): Promise<void> {
  if (opts.libvirtMgmt)
    await ensureMgmtNetwork(
      t,
      t.hosts.map((h) => h.name),
      log,
    )
  const wanted = new Set(labBridges(t))
  for (const stale of existingBridges(t).filter((b) => !wanted.has(b))) {
    log(`Removing stale bridge ${stale}`)
    await $(q)`ip link delete ${stale}`
  }
  for (const net of t.networks) {
    if (!fs.existsSync(`/sys/class/net/${net.bridge}`)) {
      log(`Creating bridge ${net.bridge} for network ${net.name} (${net.cidr})`)
      await $(q)`ip link add name ${net.bridge} type bridge`
    }
    // No IPv6 on lab bridges: this machine must not talk or route IPv6 into the lab.
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${net.bridge}/disable_ipv6`, '1')
    await $(q)`ip link set dev ${net.bridge} up`
    const have = (await $(q)`ip -4 -o addr show dev ${net.bridge}`).stdout
    const want = net.hostAddress ? `${net.hostAddress}/${net.prefix}` : undefined
    for (const m of have.matchAll(/inet (\S+)/g)) {
      if (m[1] !== want) await $(q)`ip addr del ${m[1]} dev ${net.bridge}`
    }
    if (want && !have.includes(`inet ${want} `)) {
      await $(q)`ip addr add ${want} broadcast ${net.broadcast} dev ${net.bridge}`
    }
  }
  await $({ ...q, input: forwardGuard(t) })`nft -f -`
}

export async function networksDown(t: Plan, log: (m: string) => void = console.log): Promise<void> {
  for (const bridge of existingBridges(t)) {
    log(`Removing bridge ${bridge}`)
    await $(q)`ip link delete ${bridge}`
  }
  await $(q)`nft delete table inet ${guardTable(t)}`.nothrow()
}
