// The topology file is the lab's single source of truth. This module is its only
// reader: it parses, refuses a wrong topology with every wrong field named, and
// resolves what others derive from it (bridges, prefixes, routes). The Vagrantfile
// gets the resolved form as JSON through scripts/topology.ts.
import fs from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { broadcast, contains, formatAddress, isHostAddress, overlaps, parseAddress, parseCidr, type Cidr } from './lib/ipv4.js'

export const ROLES = ['iot-client', 'gateway', 'proxy', 'backend', 'db'] as const
export type Role = (typeof ROLES)[number]
export const NETWORK_KINDS = ['management', 'lan', 'wan'] as const
export type NetworkKind = (typeof NETWORK_KINDS)[number]

/** The build machine's uplink: the lab must never use it (DEVELOPERS.md, PLATFORM.md). */
export const FORBIDDEN_RANGES = ['192.0.2.0/24']

export interface Network {
  name: string
  kind: NetworkKind
  cidr: string
  prefix: number
  /** Linux bridge on the lxc provider, internal network name on VMs. */
  bridge: string
  /** management only: the provisioning machine's address on it (lxc). */
  hostAddress?: string
  /** lan only: the gateway host through which this LAN reaches the other sites. */
  gateway?: string
  broadcast: string
}

export interface Interface { network: string; address: string; prefix: number; broadcast: string; bridge: string }
export interface Route { to: string; via: string; network: string }

export interface Host {
  name: string
  role: Role
  /** In the order the topology lists them; the management interface first. */
  interfaces: Interface[]
  mgmt: Interface
  routes: Route[]
  memory: number
  cpus: number
}

export interface Topology {
  name: string
  networks: Network[]
  hosts: Host[]
}

export class TopologyError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file} is not a valid topology:\n${problems.map((p) => `  - ${p}`).join('\n')}\nFix these fields and run the command again.`)
    this.name = 'TopologyError'
  }
}

const TOP_KEYS = ['name', 'networks', 'hosts']
const NETWORK_KEYS = ['kind', 'cidr', 'host_address', 'gateway']
const HOST_KEYS = ['role', 'interfaces', 'memory', 'cpus']
const NAME = /^[a-z][a-z0-9]{1,7}$/
const NETWORK_NAME = /^[a-z][a-z0-9]{0,5}$/
const HOST_NAME = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/

type Raw = Record<string, unknown>
const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v)

export function loadTopology(file: string): Topology {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw new TopologyError(file, [`cannot be read: ${(e as Error).message}`])
  }
  return parseTopology(text, file)
}

export function parseTopology(text: string, file = 'topology'): Topology {
  let raw: unknown
  try {
    raw = parseYaml(text)
  } catch (e) {
    throw new TopologyError(file, [`is not valid YAML: ${(e as Error).message.split('\n')[0]}`])
  }
  return validateTopology(raw, file)
}

/** Validate raw data and resolve it; every problem is collected, then all are reported. */
export function validateTopology(raw: unknown, file = 'topology'): Topology {
  const problems: string[] = []
  const fail = (field: string, msg: string) => problems.push(`${field}: ${msg}`)
  if (!isObject(raw)) throw new TopologyError(file, ['the top level must be a mapping with name, networks and hosts'])
  unknownKeys(raw, TOP_KEYS, '', fail)

  const name = raw.name
  if (typeof name !== 'string' || !NAME.test(name)) {
    fail('name', `must be 2 to 8 lower-case letters or digits, starting with a letter (it prefixes bridge and container names); got ${JSON.stringify(name)}`)
  }
  const labName = typeof name === 'string' ? name : 'lab'

  // Networks
  const networks: Network[] = []
  const cidrs = new Map<string, Cidr>()
  if (!isObject(raw.networks) || Object.keys(raw.networks).length === 0) {
    fail('networks', 'must be a mapping of network name to {kind, cidr}')
  } else {
    for (const [netName, value] of Object.entries(raw.networks)) {
      const field = `networks.${netName}`
      if (!NETWORK_NAME.test(netName)) fail(field, 'a network name is 1 to 6 lower-case letters or digits, starting with a letter (it names a bridge)')
      if (!isObject(value)) { fail(field, 'must be a mapping with kind and cidr'); continue }
      unknownKeys(value, NETWORK_KEYS, field, fail)
      const kind = value.kind as NetworkKind
      if (!NETWORK_KINDS.includes(kind)) fail(`${field}.kind`, `must be one of ${NETWORK_KINDS.join(', ')}; got ${JSON.stringify(value.kind)}`)
      const cidr = typeof value.cidr === 'string' ? parseCidr(value.cidr) : undefined
      if (!cidr) { fail(`${field}.cidr`, `must be an IPv4 network such as 10.10.1.0/24 with no host bits set; got ${JSON.stringify(value.cidr)}`); continue }
      if (cidr.prefix < 8 || cidr.prefix > 29) fail(`${field}.cidr`, `prefix /${cidr.prefix} is out of range: use /8 to /29`)
      for (const forbidden of FORBIDDEN_RANGES) {
        if (overlaps(cidr, parseCidr(forbidden)!)) fail(`${field}.cidr`, `${cidr.text} overlaps ${forbidden}, the build machine's own uplink: choose another range`)
      }
      for (const [other, otherCidr] of cidrs) {
        if (overlaps(cidr, otherCidr)) fail(`${field}.cidr`, `${cidr.text} overlaps networks.${other}.cidr (${otherCidr.text})`)
      }
      cidrs.set(netName, cidr)
      const net: Network = {
        name: netName, kind, cidr: cidr.text, prefix: cidr.prefix,
        bridge: `${labName}-${netName}`, broadcast: formatAddress(broadcast(cidr)),
      }
      if (value.host_address !== undefined) {
        if (kind !== 'management') fail(`${field}.host_address`, 'only a management network has a host_address')
        const a = typeof value.host_address === 'string' ? parseAddress(value.host_address) : undefined
        if (a === undefined) fail(`${field}.host_address`, `must be an IPv4 address; got ${JSON.stringify(value.host_address)}`)
        else if (!isHostAddress(cidr, a)) fail(`${field}.host_address`, `${value.host_address} is not a host address of ${cidr.text}`)
        else net.hostAddress = value.host_address as string
      } else if (kind === 'management') {
        fail(`${field}.host_address`, 'a management network needs the provisioning machine\'s address on it')
      }
      if (value.gateway !== undefined) {
        if (kind !== 'lan') fail(`${field}.gateway`, 'only a lan network has a gateway')
        else if (typeof value.gateway !== 'string') fail(`${field}.gateway`, 'must be the name of a gateway host')
        else net.gateway = value.gateway
      }
      networks.push(net)
    }
    const managements = networks.filter((n) => n.kind === 'management')
    if (managements.length !== 1) fail('networks', `exactly one network must have kind management; found ${managements.length}`)
  }
  const byNet = new Map(networks.map((n) => [n.name, n]))

  // Hosts
  const hosts: Host[] = []
  const owners = new Map<string, string>()
  for (const n of networks) if (n.hostAddress) owners.set(n.hostAddress, `networks.${n.name}.host_address`)
  if (!isObject(raw.hosts) || Object.keys(raw.hosts).length === 0) {
    fail('hosts', 'must be a mapping of host name to {role, interfaces}')
  } else {
    for (const [hostName, value] of Object.entries(raw.hosts)) {
      const field = `hosts.${hostName}`
      if (!HOST_NAME.test(hostName)) fail(field, 'a host name is lower-case letters, digits and dashes, starting with a letter')
      if (!isObject(value)) { fail(field, 'must be a mapping with role and interfaces'); continue }
      unknownKeys(value, HOST_KEYS, field, fail)
      const role = value.role as Role
      if (!ROLES.includes(role)) fail(`${field}.role`, `unknown role ${JSON.stringify(value.role)}: must be one of ${ROLES.join(', ')}`)
      const memory = value.memory ?? 512
      const cpus = value.cpus ?? 1
      if (!Number.isInteger(memory) || (memory as number) < 128) fail(`${field}.memory`, 'must be a whole number of MiB, at least 128')
      if (!Number.isInteger(cpus) || (cpus as number) < 1) fail(`${field}.cpus`, 'must be a whole number, at least 1')
      const interfaces: Interface[] = []
      if (!isObject(value.interfaces) || Object.keys(value.interfaces).length === 0) {
        fail(`${field}.interfaces`, 'must map network names to this host\'s address on each')
      } else {
        for (const [netName, addrText] of Object.entries(value.interfaces)) {
          const ifField = `${field}.interfaces.${netName}`
          const net = byNet.get(netName)
          if (!net) { fail(ifField, `unknown network ${JSON.stringify(netName)}: networks are ${[...byNet.keys()].join(', ')}`); continue }
          const addr = typeof addrText === 'string' ? parseAddress(addrText) : undefined
          if (addr === undefined) { fail(ifField, `must be an IPv4 address; got ${JSON.stringify(addrText)}`); continue }
          if (!isHostAddress(cidrs.get(netName)!, addr)) { fail(ifField, `${addrText} is outside network ${netName} (${net.cidr}) or is its network or broadcast address`); continue }
          const owner = owners.get(addrText as string)
          if (owner) { fail(ifField, `duplicate address ${addrText}: already used by ${owner}`); continue }
          owners.set(addrText as string, ifField)
          interfaces.push({ network: netName, address: addrText as string, prefix: net.prefix, broadcast: net.broadcast, bridge: net.bridge })
        }
        const mgmtNets = interfaces.filter((i) => byNet.get(i.network)?.kind === 'management')
        if (mgmtNets.length === 0 && networks.some((n) => n.kind === 'management')) {
          fail(`${field}.interfaces`, 'every host needs an address on the management network, the provisioner\'s only way in')
        }
      }
      // Management first: on lxc it becomes the container's first NIC.
      interfaces.sort((a, b) => Number(byNet.get(b.network)?.kind === 'management') - Number(byNet.get(a.network)?.kind === 'management'))
      hosts.push({ name: hostName, role, interfaces, mgmt: interfaces[0], routes: [], memory: memory as number, cpus: cpus as number })
    }
  }

  // Gateways of LANs, and the routes they imply
  for (const net of networks.filter((n) => n.kind === 'lan')) {
    const field = `networks.${net.name}.gateway`
    if (!net.gateway) continue
    const gw = hosts.find((h) => h.name === net.gateway)
    if (!gw) fail(field, `unknown host ${JSON.stringify(net.gateway)}`)
    else if (gw.role !== 'gateway') fail(field, `host ${gw.name} has role ${gw.role}, not gateway`)
    else if (!gw.interfaces.some((i) => i.network === net.name)) fail(field, `host ${gw.name} has no interface on ${net.name}`)
  }
  if (problems.length > 0) throw new TopologyError(file, problems)

  const lans = networks.filter((n) => n.kind === 'lan')
  for (const host of hosts) {
    for (const iface of host.interfaces) {
      const net = byNet.get(iface.network)!
      if (net.kind !== 'lan' || !net.gateway || net.gateway === host.name) continue
      const via = hosts.find((h) => h.name === net.gateway)!.interfaces.find((i) => i.network === net.name)!.address
      for (const other of lans) {
        if (other.name !== net.name && !host.interfaces.some((i) => i.network === other.name)) {
          host.routes.push({ to: other.cidr, via, network: net.name })
        }
      }
    }
  }
  return { name: labName, networks, hosts }
}

function unknownKeys(obj: Raw, allowed: string[], field: string, fail: (f: string, m: string) => void) {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) fail(field ? `${field}.${key}` : key, `unknown field (allowed: ${allowed.join(', ')})`)
  }
}

// Small queries everyone needs, so no caller re-derives them.
export const hostsWithRole = (t: Topology, role: Role) => t.hosts.filter((h) => h.role === role)
export const managementNetwork = (t: Topology) => t.networks.find((n) => n.kind === 'management')!
export function addressOn(host: Host, network: string): string | undefined {
  return host.interfaces.find((i) => i.network === network)?.address
}
export function networkOf(t: Topology, address: string): Network | undefined {
  const a = parseAddress(address)
  return a === undefined ? undefined : t.networks.find((n) => contains(parseCidr(n.cidr)!, a))
}
