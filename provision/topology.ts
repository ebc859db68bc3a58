// The topology file is the lab's single source of truth. This module is its only
// reader: it parses, refuses a wrong topology with every wrong field named, and
// resolves what others derive from it (bridges, prefixes, routes). The Vagrantfile
// gets the resolved form as JSON through scripts/topology.ts.
import fs from 'node:fs'
import { parse as parseYaml } from 'yaml'
import {
  broadcast,
  contains,
  formatAddress,
  isHostAddress,
  overlaps,
  parseAddress,
  parseCidr,
  type Cidr,
} from './lib/ipv4.js'
import { MAX_BATCH_READINGS } from '../services/lib/reading.js'

export const ROLES = ['iot-client', 'gateway', 'proxy', 'backend', 'db', 'monitor', 'site-farm'] as const
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
  oldServer?: OldServer
}

export interface OldServer {
  /** The address devices have always used, on their LAN; the site gateway answers for it. */
  address: string
  /** The host or group that now serves it, reached through the tunnel, and its (virtual) address. */
  host: string
  target: string
  ports: number[]
}

export interface Interface {
  network: string
  address: string
  prefix: number
  broadcast: string
  bridge: string
}
export interface Route {
  to: string
  via: string
  network: string
}

export interface Host {
  name: string
  role: Role
  /** In the order the topology lists them; the management interface first. */
  interfaces: Interface[]
  mgmt: Interface
  routes: Route[]
  /** A VM's size: MiB of memory (512 unless the topology sets it). */
  memory: number
  /** A VM's CPUs (1 unless set); a container's share of this machine's cores, in hundredths. */
  cpus: number
  /**
   * What the topology sets of memory and cpus, and so a container's cgroup limits: a
   * container has none unless it is given them (it shares this machine's cores and
   * memory), where a VM always has a size.
   */
  limits: { memory?: number; cpus?: number }
}

export const VPN_AUTH = ['pubkey', 'psk'] as const
export type VpnAuth = (typeof VPN_AUTH)[number]

/** One site-to-site tunnel: an IoT site's gateway to the hub (the cloud's gateway). */
export interface Tunnel {
  name: string
  site: string
  /** The hub's name: a gateway host, or a gateway group (its identity either way). */
  hub: string
  /** The hosts that run the hub's side: the hub itself, or the group's members. */
  hubMembers: string[]
  /** The wan network the tunnel crosses (the hub's address there may be a pair's virtual one). */
  network: string
  siteAddress: string
  hubAddress: string
  siteSubnets: string[]
  hubSubnets: string[]
}

export interface Vpn {
  hub: string
  auth: VpnAuth
  tunnels: Tunnel[]
}

/**
 * Many IoT sites on one host, for measuring what the hub costs per site (npm run bench
 * -- --sites-curve adds one to a copy of the topology): each site has its own outer
 * address in `wan` (routed to the farm host), its own identity from the lab CA and its
 * own LAN, a /24 of `lans` (traffic selectors only: no such LAN exists). The hub serves
 * them all with one connection (any identity the lab CA certified), so nothing on the
 * hub is configured per site.
 */
export interface SiteFarm {
  host: string
  /** The wan network the farm shares with the hub, the farm host's and the hub's address on it. */
  network: string
  address: string
  hubAddress: string
  /** The hosts that serve the farm's sites: the hub, or its pair's members. */
  hubMembers: string[]
  wan: string
  lans: string
}

/** The telemetry services: how many devices each IoT client simulates, and how often. */
export interface Telemetry {
  devicesPerClient: number
  intervalMs: number
  /** Devices with keys for the load generator (npm run bench), ids bench-0001 on. */
  benchDevices: number
  /** The ingest servers' port on the backends. */
  port: number
  /** Where clients send readings, if not their LAN's old server address (an IPv4 address, port 80). */
  server?: string
  /** The cap on each client's outbox, MiB: past it, new readings are refused, none taken is dropped. */
  outboxMaxMb: number
  /** Readings per request when a client sends (a backlog drains in batches); 1: one per request. */
  batch: number
  /**
   * TLS inside the cloud (nginx to the backends, the backends to PostgreSQL, mutual, from
   * the services CA). true by default; false only to measure what it costs (npm run bench
   * switches it for its plain runs and back).
   */
  cloudTls: boolean
  /** Every simulated device, with the iot-client host that runs it. */
  devices: { id: string; host: string }[]
}

/**
 * Redundancy: hosts of one role that provide its service together, behind a virtual
 * address on each of the networks listed, which keepalived (VRRP, unicast between the
 * members) moves to the active one. A group's name stands where a host's would
 * (networks.NAME.old_server.host), and its address is then the virtual one.
 */
export interface Group {
  name: string
  role: Role
  /** In the topology's order: the first has the highest VRRP priority. */
  members: string[]
  addresses: { network: string; address: string; prefix: number }[]
}

/** The roles a group may have: the proxy pair, the hub pair, the database cluster. */
export const GROUP_ROLES: readonly Role[] = ['proxy', 'gateway', 'db']
/** Roles whose hosts all serve one address: two of them outside a group are refused (gateways are sites too). */
const ONE_SERVICE_ROLES: readonly Role[] = ['proxy', 'db']
/**
 * The members a group of a role must have. A database cluster is three: etcd needs a
 * majority to keep a leader, and with strict synchronous replication two hosts would
 * stop taking writes when the standby is lost.
 */
const GROUP_SIZES: Partial<Record<Role, number>> = { db: 3 }

export interface Topology {
  name: string
  networks: Network[]
  hosts: Host[]
  groups: Group[]
  vpn?: Vpn
  siteFarm?: SiteFarm
  telemetry: Telemetry
}

export class TopologyError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(
      `${file} is not a valid topology:\n${problems.map((p) => `  - ${p}`).join('\n')}\nFix these fields and run the command again.`,
    )
    this.name = 'TopologyError'
  }
}

const TOP_KEYS = ['name', 'networks', 'hosts', 'groups', 'vpn', 'site_farm', 'telemetry']
const SITE_FARM_KEYS = ['host', 'wan', 'lans']
const GROUP_KEYS = ['members', 'addresses']
const TELEMETRY_KEYS = [
  'devices',
  'interval_ms',
  'bench_devices',
  'port',
  'server',
  'outbox_max_mb',
  'batch',
  'cloud_tls',
]
const VPN_KEYS = ['hub', 'auth']
const OLD_SERVER_KEYS = ['address', 'host', 'ports']
const NETWORK_KEYS = ['kind', 'cidr', 'host_address', 'gateway', 'old_server']
const HOST_KEYS = ['role', 'interfaces', 'memory', 'cpus']

/** A positive number of CPUs in hundredths at most (1, 2, 0.5, 0.25; not 0.125). */
function isHundredths(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && x >= 0.01 && Math.abs(x * 100 - Math.round(x * 100)) < 1e-9
}
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
    fail(
      'name',
      `must be 2 to 8 lower-case letters or digits, starting with a letter (it prefixes bridge and container names); got ${JSON.stringify(name)}`,
    )
  }
  const labName = typeof name === 'string' ? name : 'lab'

  const { networks, cidrs } = validateNetworks(raw.networks, labName, fail)
  const byNet = new Map(networks.map((n) => [n.name, n]))
  // Every address in use, with the field that holds it: a second use is named with the first.
  const owners = new Map<string, string>()
  for (const n of networks) if (n.hostAddress) owners.set(n.hostAddress, `networks.${n.name}.host_address`)
  const hosts = validateHosts(raw.hosts, byNet, cidrs, owners, fail)
  const groups = validateGroups(raw.groups, byNet, cidrs, hosts, owners, fail)
  validateLanGateways(networks, hosts, groups, fail)
  const vpn = validateVpn(raw.vpn, networks, hosts, groups, fail)
  validateOldServers(raw.networks, networks, hosts, groups, owners, vpn, fail)
  const siteFarm = validateSiteFarm(raw.site_farm, networks, cidrs, hosts, vpn, fail)
  const telemetry = validateTelemetry(raw.telemetry, hosts, fail)
  if (problems.length > 0) throw new TopologyError(file, problems)
  addRoutes(networks, hosts, groups, siteFarm)
  return {
    name: labName,
    networks,
    hosts,
    groups,
    ...(vpn ? { vpn } : {}),
    ...(siteFarm ? { siteFarm } : {}),
    telemetry,
  }
}

type Fail = (field: string, msg: string) => void

/** A range of the lab's may overlap neither the build machine's uplink nor a network already read. */
function failClashes(field: string, c: Cidr, cidrs: Map<string, Cidr>, fail: Fail) {
  for (const forbidden of FORBIDDEN_RANGES)
    if (overlaps(c, parseCidr(forbidden)!))
      fail(field, `${c.text} overlaps ${forbidden}, the build machine's own uplink: choose another range`)
  for (const [other, otherCidr] of cidrs)
    if (overlaps(c, otherCidr)) fail(field, `${c.text} overlaps networks.${other}.cidr (${otherCidr.text})`)
}

/** networks: each name, kind and CIDR (in range, not the uplink's, overlapping none), exactly one management. */
function validateNetworks(
  raw: unknown,
  labName: string,
  fail: Fail,
): { networks: Network[]; cidrs: Map<string, Cidr> } {
  const networks: Network[] = []
  const cidrs = new Map<string, Cidr>()
  if (!isObject(raw) || Object.keys(raw).length === 0) {
    fail('networks', 'must be a mapping of network name to {kind, cidr}')
  } else {
    for (const [netName, value] of Object.entries(raw)) {
      const field = `networks.${netName}`
      if (!NETWORK_NAME.test(netName))
        fail(field, 'a network name is 1 to 6 lower-case letters or digits, starting with a letter (it names a bridge)')
      if (!isObject(value)) {
        fail(field, 'must be a mapping with kind and cidr')
        continue
      }
      unknownKeys(value, NETWORK_KEYS, field, fail)
      const kind = value.kind as NetworkKind
      if (!NETWORK_KINDS.includes(kind))
        fail(`${field}.kind`, `must be one of ${NETWORK_KINDS.join(', ')}; got ${JSON.stringify(value.kind)}`)
      const cidr = typeof value.cidr === 'string' ? parseCidr(value.cidr) : undefined
      if (!cidr) {
        fail(
          `${field}.cidr`,
          `must be an IPv4 network such as 10.10.1.0/24 with no host bits set; got ${JSON.stringify(value.cidr)}`,
        )
        continue
      }
      if (cidr.prefix < 8 || cidr.prefix > 29)
        fail(`${field}.cidr`, `prefix /${cidr.prefix} is out of range: use /8 to /29`)
      failClashes(`${field}.cidr`, cidr, cidrs, fail)
      cidrs.set(netName, cidr)
      const net: Network = {
        name: netName,
        kind,
        cidr: cidr.text,
        prefix: cidr.prefix,
        bridge: `${labName}-${netName}`,
        broadcast: formatAddress(broadcast(cidr)),
      }
      if (value.host_address !== undefined) {
        if (kind !== 'management') fail(`${field}.host_address`, 'only a management network has a host_address')
        const text = typeof value.host_address === 'string' ? value.host_address : undefined
        const a = text === undefined ? undefined : parseAddress(text)
        if (a === undefined)
          fail(`${field}.host_address`, `must be an IPv4 address; got ${JSON.stringify(value.host_address)}`)
        else if (!isHostAddress(cidr, a)) fail(`${field}.host_address`, `${text} is not a host address of ${cidr.text}`)
        else net.hostAddress = text
      } else if (kind === 'management') {
        fail(`${field}.host_address`, "a management network needs the provisioning machine's address on it")
      }
      if (value.gateway !== undefined) {
        if (kind !== 'lan') fail(`${field}.gateway`, 'only a lan network has a gateway')
        else if (typeof value.gateway !== 'string') fail(`${field}.gateway`, 'must be the name of a gateway host')
        else net.gateway = value.gateway
      }
      networks.push(net)
    }
    const managements = networks.filter((n) => n.kind === 'management')
    if (managements.length !== 1)
      fail('networks', `exactly one network must have kind management; found ${managements.length}`)
  }
  return { networks, cidrs }
}

/** hosts: each name, role, size and interfaces (an address of its network, unused, management first). */
function validateHosts(
  raw: unknown,
  byNet: Map<string, Network>,
  cidrs: Map<string, Cidr>,
  owners: Map<string, string>,
  fail: Fail,
): Host[] {
  const hosts: Host[] = []
  if (!isObject(raw) || Object.keys(raw).length === 0) {
    fail('hosts', 'must be a mapping of host name to {role, interfaces}')
  } else {
    for (const [hostName, value] of Object.entries(raw)) {
      const field = `hosts.${hostName}`
      if (!HOST_NAME.test(hostName))
        fail(field, 'a host name is lower-case letters, digits and dashes, starting with a letter')
      // Vagrant resolves a machine name by id prefix in its global machine index first:
      // `vagrant ssh db` can reach whichever machine's id starts with "db" (measured).
      else if (/^[0-9a-f]+$/.test(hostName))
        fail(
          field,
          `a host name made only of hex digits is refused: Vagrant takes "${hostName}" for the id prefix of a machine in its global index, so \`vagrant ssh ${hostName}\` could reach another machine; use a letter beyond f or a dash (e.g. "database")`,
        )
      if (!isObject(value)) {
        fail(field, 'must be a mapping with role and interfaces')
        continue
      }
      unknownKeys(value, HOST_KEYS, field, fail)
      const role = value.role as Role
      if (!ROLES.includes(role))
        fail(`${field}.role`, `unknown role ${JSON.stringify(value.role)}: must be one of ${ROLES.join(', ')}`)
      const memory = value.memory ?? 512
      const cpus = value.cpus ?? 1
      if (!Number.isInteger(memory) || (memory as number) < 128)
        fail(`${field}.memory`, 'must be a whole number of MiB, at least 128')
      // A fraction caps a container's CPU time (a tenth of a core: 0.1); a VM takes
      // whole CPUs, which the plan checks once it knows the host's provider.
      if (!isHundredths(cpus))
        fail(`${field}.cpus`, 'must be a number of CPUs above 0, in hundredths at most (0.1 is a tenth of a core)')
      const interfaces = validateInterfaces(field, value.interfaces, byNet, cidrs, owners, fail)
      // Management first: on lxc it becomes the container's first NIC.
      interfaces.sort(
        (a, b) =>
          Number(byNet.get(b.network)?.kind === 'management') - Number(byNet.get(a.network)?.kind === 'management'),
      )
      hosts.push({
        name: hostName,
        role,
        interfaces,
        mgmt: interfaces[0],
        routes: [],
        memory: memory as number,
        cpus: cpus as number,
        limits: {
          // Unset, or null (YAML's empty value): no limit.
          ...(value.memory != null ? { memory: memory as number } : {}),
          ...(value.cpus != null ? { cpus: cpus as number } : {}),
        },
      })
    }
  }
  return hosts
}

/** A host's interfaces: each on a known network, at an unused host address of it; one on management. */
function validateInterfaces(
  field: string,
  raw: unknown,
  byNet: Map<string, Network>,
  cidrs: Map<string, Cidr>,
  owners: Map<string, string>,
  fail: Fail,
): Interface[] {
  const interfaces: Interface[] = []
  if (!isObject(raw) || Object.keys(raw).length === 0) {
    fail(`${field}.interfaces`, "must map network names to this host's address on each")
  } else {
    for (const [netName, addrText] of Object.entries(raw)) {
      const ifField = `${field}.interfaces.${netName}`
      const net = byNet.get(netName)
      if (!net) {
        fail(
          ifField,
          `unknown network ${JSON.stringify(netName)}: networks are ${[...byNet.keys()].join(', ') || '(none)'}`,
        )
        continue
      }
      const addr = typeof addrText === 'string' ? parseAddress(addrText) : undefined
      if (addr === undefined) {
        fail(ifField, `must be an IPv4 address; got ${JSON.stringify(addrText)}`)
        continue
      }
      const c = cidrs.get(netName)!
      if (!isHostAddress(c, addr)) {
        const why = !contains(c, addr)
          ? 'is outside'
          : addr === c.network
            ? 'is the network address of'
            : 'is the broadcast address of'
        fail(
          ifField,
          `${String(addrText)} ${why} network ${netName} (${net.cidr}): a host needs an address inside it, neither its first nor its last`,
        )
        continue
      }
      const owner = owners.get(addrText as string)
      if (owner) {
        fail(ifField, `duplicate address ${String(addrText)}: already used by ${owner}`)
        continue
      }
      owners.set(addrText as string, ifField)
      interfaces.push({
        network: netName,
        address: addrText as string,
        prefix: net.prefix,
        broadcast: net.broadcast,
        bridge: net.bridge,
      })
    }
    const mgmtNets = interfaces.filter((i) => byNet.get(i.network)?.kind === 'management')
    if (mgmtNets.length === 0 && [...byNet.values()].some((n) => n.kind === 'management')) {
      fail(
        `${field}.interfaces`,
        "every host needs an address on the management network, the provisioner's only way in",
      )
    }
  }
  return interfaces
}

/** A LAN's gateway is a gateway host with an interface on that LAN, or a group of them with an address there. */
function validateLanGateways(networks: Network[], hosts: Host[], groups: Group[], fail: Fail) {
  for (const net of networks.filter((n) => n.kind === 'lan')) {
    const field = `networks.${net.name}.gateway`
    if (!net.gateway) continue
    const gw = hosts.find((h) => h.name === net.gateway)
    const group = groups.find((g) => g.name === net.gateway)
    if (group) {
      if (group.role !== 'gateway') fail(field, `group ${group.name} has role ${group.role}, not gateway`)
      else if (!group.addresses.some((a) => a.network === net.name))
        fail(field, `group ${group.name} has no address on ${net.name} (groups.${group.name}.addresses.${net.name})`)
    } else if (!gw) fail(field, `unknown host or group ${JSON.stringify(net.gateway)}`)
    else if (gw.role !== 'gateway') fail(field, `host ${gw.name} has role ${gw.role}, not gateway`)
    else if (!gw.interfaces.some((i) => i.network === net.name))
      fail(field, `host ${gw.name} has no interface on ${net.name}`)
  }
}

/**
 * The routes a LAN's gateway implies: every other host on that LAN reaches the other LANs
 * through it (a gateway pair: through its virtual address, wherever it is now).
 */
function addRoutes(networks: Network[], hosts: Host[], groups: Group[], farm?: SiteFarm) {
  const byNet = new Map(networks.map((n) => [n.name, n]))
  const lans = networks.filter((n) => n.kind === 'lan')
  for (const host of hosts) {
    for (const iface of host.interfaces) {
      const net = byNet.get(iface.network)!
      if (net.kind !== 'lan' || !net.gateway || net.gateway === host.name) continue
      const group = groups.find((g) => g.name === net.gateway)
      if (group?.members.includes(host.name)) continue
      const via = group
        ? group.addresses.find((a) => a.network === net.name)!.address
        : hosts.find((h) => h.name === net.gateway)!.interfaces.find((i) => i.network === net.name)!.address
      for (const other of lans) {
        if (other.name !== net.name && !host.interfaces.some((i) => i.network === other.name)) {
          host.routes.push({ to: other.cidr, via, network: net.name })
        }
      }
    }
  }
  // The hub's members reach the farm's sites through the farm host.
  for (const h of hosts.filter((x) => farm?.hubMembers.includes(x.name)))
    h.routes.push({ to: farm!.wan, via: farm!.address, network: farm!.network })
}

/**
 * site_farm: a host of role site-farm on a wan network the hub is on, and two ranges of
 * its own (outer addresses, LANs) that overlap no network, each other or the uplink.
 */
function validateSiteFarm(
  raw: unknown,
  networks: Network[],
  cidrs: Map<string, Cidr>,
  hosts: Host[],
  vpn: Vpn | undefined,
  fail: Fail,
): SiteFarm | undefined {
  const farmHosts = hosts.filter((h) => h.role === 'site-farm')
  if (raw === undefined) {
    for (const h of farmHosts)
      fail(`hosts.${h.name}.role`, 'a site-farm host needs the site_farm block (host, wan, lans)')
    return undefined
  }
  if (!isObject(raw)) {
    fail('site_farm', 'must be a mapping with host, wan and lans')
    return undefined
  }
  unknownKeys(raw, SITE_FARM_KEYS, 'site_farm', fail)
  const host = hosts.find((h) => h.name === raw.host)
  if (!host || host.role !== 'site-farm') {
    fail('site_farm.host', `must name a host of role site-farm; got ${JSON.stringify(raw.host)}`)
    return undefined
  }
  for (const h of farmHosts.filter((x) => x !== host))
    fail(`hosts.${h.name}.role`, `one site farm per lab: site_farm.host is ${host.name}`)
  if (!vpn) {
    fail('site_farm', 'a site farm needs the vpn block: its sites connect to the hub')
    return undefined
  }
  if (vpn.auth !== 'pubkey')
    fail('site_farm', "a farm's sites authenticate with certificates from the lab CA: set vpn.auth to pubkey")
  const wanIf = host.interfaces.find((i) => networks.find((n) => n.name === i.network)?.kind === 'wan')
  const tunnel = wanIf && vpn.tunnels.find((t) => t.network === wanIf.network)
  if (!wanIf || !tunnel) {
    fail(`hosts.${host.name}.interfaces`, `the site farm needs an address on the wan network the hub's sites use`)
    return undefined
  }
  const ranges: Record<string, Cidr | undefined> = {}
  for (const key of ['wan', 'lans'] as const) {
    const text = raw[key]
    const c = typeof text === 'string' ? parseCidr(text) : undefined
    if (!c) {
      fail(`site_farm.${key}`, `must be an IPv4 network such as 198.18.0.0/15; got ${JSON.stringify(raw[key])}`)
      continue
    }
    if (c.prefix > 22) fail(`site_farm.${key}`, `${c.text} is too small for a farm: use /22 or larger`)
    failClashes(`site_farm.${key}`, c, cidrs, fail)
    ranges[key] = c
  }
  if (ranges.wan && ranges.lans && overlaps(ranges.wan, ranges.lans))
    fail('site_farm.lans', `${ranges.lans.text} overlaps site_farm.wan (${ranges.wan.text})`)
  if (!ranges.wan || !ranges.lans) return undefined
  return {
    host: host.name,
    network: wanIf.network,
    address: wanIf.address,
    hubAddress: tunnel.hubAddress,
    hubMembers: tunnel.hubMembers,
    wan: ranges.wan.text,
    lans: ranges.lans.text,
  }
}

/**
 * The most sites a farm's ranges hold: one outer address and one /24 LAN each. Site i
 * has the i-th of each, from 1: the wan's network address and its broadcast, and the
 * LANs' first /24, are none's.
 */
export const farmCapacity = (f: Pick<SiteFarm, 'wan' | 'lans'>) => {
  const wan = parseCidr(f.wan)!
  const lans = parseCidr(f.lans)!
  return Math.min(2 ** (32 - wan.prefix) - 2, 2 ** (24 - lans.prefix) - 1)
}

/**
 * groups: each a name no host has, two or more members of one role (a role groups can
 * have today), each member in one group only, and a virtual address on each listed
 * network: a host address of it, used by nothing else, on a network every member is on.
 * Two hosts with role proxy outside a group are refused too: one address must lead to them.
 */
function validateGroups(
  raw: unknown,
  byNet: Map<string, Network>,
  cidrs: Map<string, Cidr>,
  hosts: Host[],
  owners: Map<string, string>,
  fail: Fail,
): Group[] {
  const groups: Group[] = []
  const groupOf = new Map<string, string>()
  if (raw !== undefined && !isObject(raw)) fail('groups', 'must be a mapping of group name to {members, addresses}')
  for (const [name, value] of Object.entries(isObject(raw) ? raw : {})) {
    const field = `groups.${name}`
    if (!HOST_NAME.test(name))
      fail(field, 'a group name is lower-case letters, digits and dashes, starting with a letter')
    if (hosts.some((h) => h.name === name))
      fail(field, `${name} is also a host's name: a group's name stands for its members, so it must be its own`)
    if (!isObject(value)) {
      fail(field, 'must be a mapping with members (host names) and addresses (network name to virtual address)')
      continue
    }
    unknownKeys(value, GROUP_KEYS, field, fail)
    const names = Array.isArray(value.members) ? value.members : []
    const members = names.map((m) => hosts.find((h) => h.name === m))
    if (names.length < 2 || new Set(names).size !== names.length) {
      fail(`${field}.members`, `must list two or more different hosts; got ${JSON.stringify(value.members)}`)
      continue
    }
    const unknown = names.filter((_, i) => !members[i])
    if (unknown.length) {
      fail(`${field}.members`, `unknown host ${unknown.map((u) => JSON.stringify(u)).join(', ')}`)
      continue
    }
    const hostsOf = members as Host[]
    const roles = [...new Set(hostsOf.map((h) => h.role))]
    if (roles.length !== 1) {
      fail(
        `${field}.members`,
        `members must share one role; got ${hostsOf.map((h) => `${h.name} (${h.role})`).join(', ')}`,
      )
      continue
    }
    if (!GROUP_ROLES.includes(roles[0])) {
      fail(`${field}.members`, `role ${roles[0]} cannot be grouped: groups are built for ${GROUP_ROLES.join(', ')}`)
      continue
    }
    const size = GROUP_SIZES[roles[0]]
    if (size !== undefined && names.length !== size) {
      fail(
        `${field}.members`,
        `a group of role ${roles[0]} has ${size} members (a majority must survive the loss of one); got ${names.length}`,
      )
      continue
    }
    for (const h of hostsOf) {
      const other = groupOf.get(h.name)
      if (other) fail(`${field}.members`, `${h.name} is already a member of groups.${other}`)
      groupOf.set(h.name, name)
    }
    const addresses: Group['addresses'] = []
    if (!isObject(value.addresses) || Object.keys(value.addresses).length === 0)
      fail(`${field}.addresses`, 'must map network names to the virtual address the group answers on there')
    for (const [netName, addrText] of Object.entries(isObject(value.addresses) ? value.addresses : {})) {
      const aField = `${field}.addresses.${netName}`
      const net = byNet.get(netName)
      if (!net || net.kind === 'management') {
        fail(aField, net ? 'the management network carries no service' : `unknown network ${JSON.stringify(netName)}`)
        continue
      }
      const missing = hostsOf.filter((h) => !h.interfaces.some((i) => i.network === netName))
      if (missing.length) {
        fail(aField, `${missing.map((h) => h.name).join(', ')} has no interface on ${netName}: every member needs one`)
        continue
      }
      const a = typeof addrText === 'string' ? parseAddress(addrText) : undefined
      if (a === undefined || !isHostAddress(cidrs.get(netName)!, a)) {
        fail(aField, `must be a host address of network ${netName} (${net.cidr}); got ${JSON.stringify(addrText)}`)
        continue
      }
      const owner = owners.get(addrText as string)
      if (owner) {
        fail(aField, `duplicate address ${String(addrText)}: already used by ${owner}`)
        continue
      }
      owners.set(addrText as string, aField)
      addresses.push({ network: netName, address: addrText as string, prefix: net.prefix })
    }
    groups.push({ name, role: roles[0], members: names as string[], addresses })
  }
  for (const role of ONE_SERVICE_ROLES) {
    const loose = hosts.filter((h) => h.role === role && !groupOf.has(h.name))
    const all = hosts.filter((h) => h.role === role)
    if (all.length > 1 && loose.length > 0)
      fail(
        `hosts.${loose[0].name}`,
        `${all.map((h) => h.name).join(', ')} all have role ${role}: list them as the members of one group (groups.NAME.members) so that one address leads to them`,
      )
  }
  return groups
}

function validateVpn(raw: unknown, networks: Network[], hosts: Host[], groups: Group[], fail: Fail): Vpn | undefined {
  if (raw === undefined) return undefined
  if (!isObject(raw)) {
    fail('vpn', 'must be a mapping with hub and auth')
    return undefined
  }
  unknownKeys(raw, VPN_KEYS, 'vpn', fail)
  const auth = (raw.auth ?? 'pubkey') as VpnAuth
  if (!VPN_AUTH.includes(auth))
    fail('vpn.auth', `must be one of ${VPN_AUTH.join(', ')}; got ${JSON.stringify(raw.auth)}`)
  // The hub is a gateway host, or a pair of them (a group): then its identity is the
  // group's name and the sites reach it on the group's virtual address.
  const group = groups.find((g) => g.name === raw.hub)
  const hubHost = hosts.find((h) => h.name === raw.hub)
  const hub = group
    ? { name: group.name, role: group.role, interfaces: group.addresses, members: group.members }
    : hubHost && { name: hubHost.name, role: hubHost.role, interfaces: hubHost.interfaces, members: [hubHost.name] }
  if (!hub) {
    fail('vpn.hub', `must name the cloud's gateway host or gateway group; got ${JSON.stringify(raw.hub)}`)
    return undefined
  }
  if (hub.role !== 'gateway') {
    fail('vpn.hub', `${group ? 'group' : 'host'} ${hub.name} has role ${hub.role}, not gateway`)
    return undefined
  }
  for (const g of groups.filter((x) => x.role === 'gateway' && x !== group))
    fail(
      `groups.${g.name}`,
      `only the hub can be a gateway pair today (vpn.hub: ${hub.name}); an IoT site's gateway is one host`,
    )
  const lansOf = (gw: string) => networks.filter((n) => n.kind === 'lan' && n.gateway === gw).map((n) => n.cidr)
  const wanOf = (ifs: { network: string; address: string }[]) =>
    ifs.filter((i) => networks.find((n) => n.name === i.network)?.kind === 'wan')
  const tunnels: Tunnel[] = []
  for (const site of hosts.filter((h) => h.role === 'gateway' && !hub.members.includes(h.name))) {
    const shared = wanOf(site.interfaces).find((i) => wanOf(hub.interfaces).some((j) => j.network === i.network))
    if (!shared) {
      fail(
        `hosts.${site.name}.interfaces`,
        `gateway ${site.name} shares no wan network with the hub ${hub.name}${group ? ` (groups.${hub.name}.addresses)` : ''}`,
      )
      continue
    }
    if (lansOf(site.name).length === 0) {
      fail(`hosts.${site.name}`, `gateway ${site.name} is the gateway of no lan network (set networks.NAME.gateway)`)
      continue
    }
    tunnels.push({
      name: site.name,
      site: site.name,
      hub: hub.name,
      hubMembers: hub.members,
      network: shared.network,
      siteAddress: shared.address,
      hubAddress: wanOf(hub.interfaces).find((j) => j.network === shared.network)!.address,
      siteSubnets: lansOf(site.name),
      hubSubnets: lansOf(hub.name),
    })
  }
  if (lansOf(hub.name).length === 0) fail('vpn.hub', `hub ${hub.name} is the gateway of no lan network`)
  return { hub: hub.name, auth, tunnels }
}

function validateOldServers(
  rawNetworks: unknown,
  networks: Network[],
  hosts: Host[],
  groups: Group[],
  owners: Map<string, string>,
  vpn: Vpn | undefined,
  fail: Fail,
) {
  if (!isObject(rawNetworks)) return
  for (const net of networks) {
    const raw = (rawNetworks[net.name] as Raw | undefined)?.old_server
    if (raw === undefined) continue
    const field = `networks.${net.name}.old_server`
    if (!isObject(raw)) {
      fail(field, 'must be a mapping with address, host and ports')
      continue
    }
    unknownKeys(raw, OLD_SERVER_KEYS, field, fail)
    if (net.kind !== 'lan' || !net.gateway) {
      fail(field, 'only a lan network with a gateway can keep an old server address')
      continue
    }
    if (!vpn) {
      fail(field, 'an old server address is forwarded through the VPN: the topology needs a vpn section')
      continue
    }
    const a = typeof raw.address === 'string' ? parseAddress(raw.address) : undefined
    if (a === undefined) {
      fail(`${field}.address`, `must be an IPv4 address; got ${JSON.stringify(raw.address)}`)
      continue
    }
    if (!isHostAddress(parseCidr(net.cidr)!, a)) {
      fail(`${field}.address`, `${String(raw.address)} is outside network ${net.name} (${net.cidr})`)
      continue
    }
    const owner = owners.get(raw.address as string)
    if (owner) {
      fail(`${field}.address`, `duplicate address ${String(raw.address)}: already used by ${owner}`)
      continue
    }
    owners.set(raw.address as string, `${field}.address`)
    // A group stands for its members: the old address leads to its virtual address.
    const hubLans = networks.filter((n) => n.kind === 'lan' && n.gateway === vpn.hub).map((n) => n.name)
    const target =
      hosts.find((h) => h.name === raw.host)?.interfaces ?? groups.find((g) => g.name === raw.host)?.addresses
    const targetIf = target?.find((i) => hubLans.includes(i.network))
    if (!targetIf) {
      fail(
        `${field}.host`,
        `must name a host or group on the hub's LAN (${hubLans.join(', ')}); got ${JSON.stringify(raw.host)}`,
      )
      continue
    }
    const ports = raw.ports ?? [80]
    if (
      !Array.isArray(ports) ||
      ports.length === 0 ||
      !ports.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535)
    ) {
      fail(`${field}.ports`, 'must be a list of TCP ports (1 to 65535)')
      continue
    }
    net.oldServer = {
      address: raw.address as string,
      host: raw.host as string,
      target: targetIf.address,
      ports: ports as number[],
    }
  }
}

function validateTelemetry(raw: unknown, hosts: Host[], fail: Fail): Telemetry {
  const r: Raw =
    raw === undefined
      ? {}
      : isObject(raw)
        ? raw
        : (fail('telemetry', `must be a mapping with any of ${TELEMETRY_KEYS.join(', ')}`), {})
  unknownKeys(r, TELEMETRY_KEYS, 'telemetry', fail)
  const int = (key: string, def: number, min: number, max: number, what: string) => {
    const v = r[key] ?? def
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) {
      fail(`telemetry.${key}`, `must be a whole number from ${min} to ${max} (${what}); got ${JSON.stringify(r[key])}`)
      return def
    }
    return v as number
  }
  const devicesPerClient = int('devices', 4, 1, 1000, 'simulated devices on each iot-client host')
  const intervalMs = int('interval_ms', 1000, 10, 3_600_000, 'milliseconds between two readings of a device')
  const benchDevices = int('bench_devices', 1000, 0, 100_000, 'devices the load generator may simulate')
  const port = int('port', 8080, 1024, 65535, "the ingest servers' TCP port")
  // About 120 MB a day for 4 devices every 250 ms: the default holds a week and more.
  const outboxMaxMb = int('outbox_max_mb', 1024, 1, 1_048_576, "the cap on each IoT client's outbox, MiB")
  const batch = int('batch', 100, 1, MAX_BATCH_READINGS, 'readings per request; 1 sends each alone')
  const cloudTls = r.cloud_tls ?? true
  if (typeof cloudTls !== 'boolean')
    fail(
      'telemetry.cloud_tls',
      `must be true or false (mutual TLS inside the cloud); got ${JSON.stringify(r.cloud_tls)}`,
    )
  let server: string | undefined
  if (r.server !== undefined) {
    if (typeof r.server !== 'string' || parseAddress(r.server) === undefined)
      fail(
        'telemetry.server',
        `must be an IPv4 address (the clients send to http://ADDRESS/readings); got ${JSON.stringify(r.server)}`,
      )
    else server = r.server
  }
  const devices = hosts
    .filter((h) => h.role === 'iot-client')
    .flatMap((h) =>
      Array.from({ length: devicesPerClient }, (_, i) => ({
        id: `${h.name}-${String(i + 1).padStart(2, '0')}`,
        host: h.name,
      })),
    )
  return {
    devicesPerClient,
    intervalMs,
    benchDevices,
    port,
    outboxMaxMb,
    batch,
    cloudTls: cloudTls !== false,
    devices,
    ...(server ? { server } : {}),
  }
}

function unknownKeys(obj: Raw, allowed: string[], field: string, fail: Fail) {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) fail(field ? `${field}.${key}` : key, `unknown field (allowed: ${allowed.join(', ')})`)
  }
}
