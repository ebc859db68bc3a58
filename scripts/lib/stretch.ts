// A lab network stretched between machines (issue 20, "beyond one machine"): each
// machine keeps its own bridge for the network, and a VXLAN device on that bridge
// carries its frames to the other machines' bridges over their underlay addresses (UDP
// 4789), as netlab's multiserver plugin does. Unicast head-end replication: one
// all-zero FDB entry per remote machine (broadcast, ARP and unknown unicast go to
// each), then the bridge learns who is where. The VXLAN header costs 50 bytes: with
// an underlay MTU of 1500 the stretched network's MTU is 1450, on the bridge and on
// every host interface on it (or the underlay carries 1550).
//
// The commands are pure (unit-tested); test/net/stretch.ts runs them in network
// namespaces on this machine: two "machines" joined by a veth pair, never its uplink.

/** IANA's VXLAN port. */
export const VXLAN_PORT = 4789
/** Outer Ethernet (14), IPv4 (20), UDP (8) and VXLAN (8) headers. */
export const VXLAN_OVERHEAD = 50

export interface StretchEnd {
  /** The network's bridge on this machine. */
  bridge: string
  /** VXLAN network identifier: one per lab network, the same on every machine. */
  vni: number
  /** This machine's underlay address, and the device that has it. */
  local: string
  dev: string
  /** The other machines' underlay addresses. */
  remotes: string[]
  /** The underlay's MTU (1500 unless it carries jumbo frames). */
  underlayMtu?: number
}

/**
 * The VXLAN device's name, one per network: the lab's prefix (lab:down finds its
 * leftovers by it) and the VNI in hexadecimal, within Linux's 15 characters.
 */
export const vxlanName = (vni: number) => `iotlab-vx${vni.toString(16)}`

/** The stretched network's MTU for an underlay MTU. */
export const stretchedMtu = (underlayMtu = 1500) => underlayMtu - VXLAN_OVERHEAD

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/

/** The `ip` and `bridge` commands (argv) that attach one machine's bridge to the others'. */
export function stretchCommands(e: StretchEnd): string[][] {
  if (!Number.isInteger(e.vni) || e.vni < 1 || e.vni > 0xffffff)
    throw new Error(`vni ${e.vni}: a VXLAN network identifier is a whole number from 1 to 16777215`)
  for (const a of [e.local, ...e.remotes])
    if (!IPV4.test(a)) throw new Error(`${a}: not an IPv4 address (the underlay's addresses, one per machine)`)
  if (e.remotes.includes(e.local)) throw new Error(`${e.local} is this machine's own address, not a remote one`)
  if (!e.remotes.length) throw new Error(`${e.bridge}: no other machine to stretch it to`)
  const vx = vxlanName(e.vni)
  const mtu = String(stretchedMtu(e.underlayMtu))
  return [
    // nolearning off (the default): frames from a remote teach the bridge's FDB where
    // each MAC lives, so only broadcast and unknown unicast go to every machine.
    [
      'ip',
      'link',
      'add',
      vx,
      'type',
      'vxlan',
      'id',
      String(e.vni),
      'local',
      e.local,
      'dev',
      e.dev,
      'dstport',
      String(VXLAN_PORT),
    ],
    ...e.remotes.map((r) => ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', vx, 'dst', r]),
    ['ip', 'link', 'set', vx, 'mtu', mtu],
    ['ip', 'link', 'set', e.bridge, 'mtu', mtu],
    ['ip', 'link', 'set', vx, 'master', e.bridge],
    ['ip', 'link', 'set', vx, 'up'],
  ]
}
