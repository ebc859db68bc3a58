// The plan: topology.yaml validated (topology.ts), then resolved once into what every
// consumer needs, so none derives it again: each host's address on every network and
// the one others reach it on, the provider a bring-up makes it with, who serves what on
// which address and who may reach it, what the monitor scrapes, where each IoT client
// sends. The Vagrantfile (through scripts/topology.ts), the provisioner's roles and
// templates, the lab command, the bench and the tests read it; only this module loads
// the topology (eslint.config.mjs enforces it). The plan is frozen: nothing changes it
// behind another reader's back. `npm run plan` prints it.
//
// A service is a group: an address its clients use and the members behind it. A single
// host is a group of one whose address is its own; a topology group (a pair behind a
// virtual address, topology.ts) fills the same fields, and its VRRP settings are
// resolved here too (plan.vrrp), so keepalived's role derives nothing.
import { topologyFile } from './paths.js'
import { DB, DB_CLUSTER, MONITOR_PORTS, PROXY_STATUS_PORT } from './ports.js'
import { chooseProviders, type Machine, type Provider } from './providers.js'
import {
  loadTopology,
  parseTopology,
  validateTopology,
  type Group as TopologyGroup,
  type Host as TopologyHost,
  type Network,
  type Role,
  type Topology,
} from './topology.js'

export { TopologyError, ROLES, NETWORK_KINDS, VPN_AUTH, FORBIDDEN_RANGES, farmCapacity } from './topology.js'
export type {
  Interface,
  Network,
  NetworkKind,
  OldServer,
  Role,
  Route,
  SiteFarm,
  Telemetry,
  Tunnel,
  Vpn,
} from './topology.js'
export type { Provider } from './providers.js'

export interface Host extends TopologyHost {
  /** network name -> this host's address on it. */
  addresses: Record<string, string>
  /**
   * Its address on its first LAN: what the monitor scrapes and the LAN services bind
   * (the management network never carries them); absent for a host on no LAN.
   */
  lanAddress?: string
  /**
   * network name -> the MAC of its interface there: fixed by the address (locally
   * administered, 02:1a and the address's four octets), so a container started again
   * after a hard stop keeps its MACs, as a real machine does, and its peers' ARP caches
   * stay right (lxc; libvirt keeps a VM's MACs in its domain, and its management MAC is
   * the DHCP reservation's, libvirt.ts).
   */
  macs: Record<string, string>
  /** The provider a bring-up makes it with (the running lab's: inventory, Vagrant's state). */
  provider: Provider
}

export interface Member {
  host: string
  address: string
}
/** A service: where its clients reach it, and the hosts that provide it. */
export interface Group {
  address: string
  members: Member[]
}

export interface Backend {
  name: string
  /** Where the proxy reaches it; the ingest server listens there. */
  address: string
  port: number
  /** The proxies' addresses facing it: the only sources its readings port admits. */
  from: string[]
}

export interface Target {
  job: string
  host: string
  role: Role
  address: string
  port: number
}

export interface Client {
  host: string
  /** Where it sends readings: telemetry.server, else its LAN's old server address, else the proxy. */
  url: string
  devices: string[]
}

export interface Services {
  /**
   * nginx: its address as the backends see it; the ports devices arrive on (their old
   * server's, 80 when no site forwards here) and the IoT subnets admitted to them; its
   * status page's port and the LANs it may be read from.
   */
  proxy?: Group & {
    ports: number[]
    devicesFrom: { subnet: string; ports: number[] }[]
    statusPort: number
    statusFrom: string[]
  }
  backends: Backend[]
  /**
   * PostgreSQL: the address the backends connect to (and it listens on); the backends'
   * addresses. With a db group (three members), the cluster: Patroni runs PostgreSQL on
   * every member and elects the primary through etcd (one member each), and the address
   * is the group's virtual one, held by the member that leads.
   */
  db?: Group & { port: number; name: string; user: string; clients: string[]; cluster?: DbCluster }
  /** Prometheus: its LAN address (what it scrapes from) and the provisioning machine's URL. */
  monitor?: Member & { url: string }
  scrapeTargets: Target[]
  clients: Client[]
  /** The one TLS name nginx checks on every backend (each backend's certificate carries it). */
  ingestTlsName: string
}

/** The database cluster: Patroni's scope (its key prefix in etcd) and the ports between the members. */
export interface DbCluster {
  scope: string
  patroniPort: number
  etcdClientPort: number
  etcdPeerPort: number
}

/** A topology group as keepalived runs it: one VRRP instance, unicast between the members. */
export interface VrrpGroup {
  name: string
  role: Role
  /** VRRP's virtual router id: the group's place in the topology, from 1. */
  vrid: number
  /** The virtual addresses, each on one of the members' networks. */
  addresses: { network: string; address: string; prefix: number }[]
  /** The network the adverts cross: the first virtual address's on a LAN (else the first's). */
  network: string
  members: {
    host: string
    /** From 150 down by 10, in the topology's order; no preemption, so only the first election uses it. */
    priority: number
    /** Its own address on the adverts' network (keepalived's unicast_src_ip, its peers' unicast_peer). */
    address: string
  }[]
}

export interface Plan extends Topology {
  hosts: Host[]
  vrrp: VrrpGroup[]
  /** Why these providers: what was asked, or what this machine can run. */
  providerReason: string
  services: Services
}

export interface PlanOptions {
  env?: NodeJS.ProcessEnv
  machine?: Machine
}

export function loadPlan(file = topologyFile, opts: PlanOptions = {}): Plan {
  return resolvePlan(loadTopology(file), opts)
}

export function parsePlan(text: string, file = 'topology', opts: PlanOptions = {}): Plan {
  return resolvePlan(parseTopology(text, file), opts)
}

/** Raw topology data (as parsed YAML), validated with every problem named, then resolved. */
export function planOf(raw: unknown, file = 'topology', opts: PlanOptions = {}): Plan {
  return resolvePlan(validateTopology(raw, file), opts)
}

function resolvePlan(t: Topology, opts: PlanOptions): Plan {
  const lans = new Set(t.networks.filter((n) => n.kind === 'lan').map((n) => n.name))
  const choice = chooseProviders(t.hosts, opts.env ?? process.env, opts.machine)
  const fractions = t.hosts.filter((h) => choice.providers[h.name] !== 'lxc' && !Number.isInteger(h.cpus))
  if (fractions.length)
    throw new Error(
      fractions
        .map(
          (h) =>
            `${h.name}: cpus ${h.cpus} is a fraction of a CPU, which a VM (${choice.providers[h.name]}) cannot have: give it a whole number, or keep ${h.name} a container (${choice.reason})`,
        )
        .join('\n'),
    )
  const hosts: Host[] = t.hosts.map((h) => {
    const lanAddress = h.interfaces.find((i) => lans.has(i.network))?.address
    return {
      ...h,
      addresses: Object.fromEntries(h.interfaces.map((i) => [i.network, i.address])),
      macs: Object.fromEntries(h.interfaces.map((i) => [i.network, macFor(i.address)])),
      ...(lanAddress ? { lanAddress } : {}),
      provider: choice.providers[h.name],
    }
  })
  const plan: Plan = {
    ...t,
    hosts,
    vrrp: t.groups.map((g, i) => vrrpGroup(g, i, hosts, t.networks)),
    providerReason: choice.reason,
    services: services(t, hosts),
  }
  return deepFreeze(plan)
}

function vrrpGroup(g: TopologyGroup, index: number, hosts: Host[], networks: Network[]): VrrpGroup {
  // Adverts cross a LAN: the internet side of a gateway pair admits only IKE and ESP.
  const lan = g.addresses.find((a) => networks.find((n) => n.name === a.network)?.kind === 'lan')
  const network = (lan ?? g.addresses[0]).network
  return {
    name: g.name,
    role: g.role,
    vrid: index + 1,
    addresses: g.addresses,
    network,
    members: g.members.map((m, i) => ({
      host: m,
      priority: 150 - 10 * i,
      address: hosts.find((h) => h.name === m)!.addresses[network],
    })),
  }
}

/** The lab's MAC for an interface address (unique as the addresses are). */
export const macFor = (address: string) =>
  ['02', '1a', ...address.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':')

/** A host's address on the first network (not management) it shares with a peer. */
function facing(host: TopologyHost, peer: TopologyHost): string | undefined {
  return host.interfaces.find(
    (i) => i.network !== host.mgmt.network && peer.interfaces.some((j) => j.network === i.network),
  )?.address
}
const firstLan = (h: TopologyHost) => h.interfaces.find((i) => i.network !== h.mgmt.network)?.address
const present = <T>(x: T | undefined): x is T => x !== undefined

function services(t: Topology, hosts: Host[]): Services {
  const withRole = (role: Role) => hosts.filter((h) => h.role === role)
  const proxies = withRole('proxy')
  const backendHosts = withRole('backend')
  const proxy = proxies[0]
  const db = withRole('db')[0]
  const monitor = withRole('monitor')[0]
  const firstBackend = backendHosts[0]

  // A proxy pair answers on its virtual address, on the network its first member faces the backends on.
  const proxyGroup = t.groups.find((g) => g.role === 'proxy')
  const proxyOwn = proxy && (firstBackend ? facing(proxy, firstBackend) : firstLan(proxy))
  const proxyNet = proxy?.interfaces.find((i) => i.address === proxyOwn)?.network
  const proxyAddress = proxyGroup ? proxyGroup.addresses.find((a) => a.network === proxyNet)?.address : proxyOwn
  const backends: Backend[] = proxy
    ? backendHosts.flatMap((b) => {
        const address = facing(b, proxy)
        const from = proxies.map((p) => facing(p, b)).filter(present)
        return address ? [{ name: b.name, address, port: t.telemetry.port, from }] : []
      })
    : []
  // A database cluster answers on its group's virtual address, on the network its first
  // member faces the backends on; each member serves on its own address there too.
  const dbGroup = t.groups.find((g) => g.role === 'db')
  const dbOwn = db && ((firstBackend && facing(db, firstBackend)) ?? firstLan(db))
  const dbNet = db?.interfaces.find((i) => i.address === dbOwn)?.network
  const dbAddress = dbGroup ? dbGroup.addresses.find((a) => a.network === dbNet)?.address : dbOwn

  const scrapeTargets: Target[] = []
  if (monitor) {
    for (const h of hosts) {
      const address = h.lanAddress
      if (!address) continue
      const add = (job: string, port: number) => scrapeTargets.push({ job, host: h.name, role: h.role, address, port })
      add('node', MONITOR_PORTS.node)
      if (h.role === 'backend') add('ingest', MONITOR_PORTS.ingest)
      if (h.role === 'proxy') add('nginx', MONITOR_PORTS.nginx)
      if (h.role === 'db') add('postgres', MONITOR_PORTS.postgres)
      if (h.role === 'db' && t.groups.some((g) => g.role === 'db')) add('patroni', DB_CLUSTER.patroni)
      if (h.role === 'iot-client') add('client', MONITOR_PORTS.client)
      if (h.role === 'monitor') add('prometheus', MONITOR_PORTS.prometheus)
    }
  }

  const clients = withRole('iot-client').map((c) => ({
    host: c.name,
    url: serverUrl(t, c, proxyAddress),
    devices: t.telemetry.devices.filter((d) => d.host === c.name).map((d) => d.id),
  }))

  return {
    ...(proxy && proxyAddress && proxyNet
      ? { proxy: proxyService(t, proxies, proxyGroup?.name ?? proxy.name, proxyAddress, proxyNet) }
      : {}),
    backends,
    ...(db && dbAddress
      ? {
          db: {
            address: dbAddress,
            port: DB.port,
            name: DB.name,
            user: DB.user,
            members: withRole('db').flatMap((h) => {
              const own = h.interfaces.find((i) => i.network === dbNet)
              return own ? [{ host: h.name, address: own.address }] : []
            }),
            clients: backendHosts.map((b) => facing(b, db)).filter(present),
            ...(dbGroup
              ? {
                  cluster: {
                    scope: `${t.name}-db`,
                    patroniPort: DB_CLUSTER.patroni,
                    etcdClientPort: DB_CLUSTER.etcdClient,
                    etcdPeerPort: DB_CLUSTER.etcdPeer,
                  },
                }
              : {}),
          },
        }
      : {}),
    ...(monitor?.lanAddress
      ? {
          monitor: {
            host: monitor.name,
            address: monitor.lanAddress,
            url: `http://${monitor.mgmt.address}:${MONITOR_PORTS.prometheus}`,
          },
        }
      : {}),
    scrapeTargets,
    clients,
    ingestTlsName: `ingest.${t.name}`,
  }
}

function proxyService(
  t: Topology,
  proxies: TopologyHost[],
  name: string,
  address: string,
  network: string,
): NonNullable<Services['proxy']> {
  const devicesFrom = t.networks
    .filter((n) => n.oldServer?.host === name)
    .map((n) => ({ subnet: n.cidr, ports: n.oldServer!.ports }))
  const ports = [...new Set(devicesFrom.flatMap((o) => o.ports))].sort((a, b) => a - b)
  return {
    address,
    members: proxies.flatMap((p) => {
      const own = p.interfaces.find((i) => i.network === network)
      return own ? [{ host: p.name, address: own.address }] : []
    }),
    ports: ports.length ? ports : [80],
    devicesFrom,
    statusPort: PROXY_STATUS_PORT,
    statusFrom: t.networks
      .filter((n) => n.kind === 'lan' && proxies[0].interfaces.some((i) => i.network === n.name))
      .map((n) => n.cidr),
  }
}

function serverUrl(t: Topology, client: TopologyHost, proxyAddress: string | undefined): string {
  if (t.telemetry.server) return `http://${t.telemetry.server}/readings`
  const lan = t.networks.find((n) => n.oldServer && client.interfaces.some((i) => i.network === n.name))
  if (lan) return `http://${lan.oldServer!.address}:${lan.oldServer!.ports[0]}/readings`
  // A client with nowhere to send is refused when its role is provisioned, not here:
  // a plan without telemetry (a VPN-only topology) is a valid plan.
  return proxyAddress ? `http://${proxyAddress}/readings` : ''
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

// Small queries everyone needs, so no caller re-derives them.
export const hostsWithRole = (p: Plan, role: Role) => p.hosts.filter((h) => h.role === role)
export const managementNetwork = (p: Plan): Network => p.networks.find((n) => n.kind === 'management')!
/**
 * The name that stands for a role's service where any command must reach the member
 * serving now: its group's (the lab's and the bench's sh resolve it to the member
 * holding the address: the database cluster's primary, say), else its one host's.
 */
export const serviceName = (p: Plan, role: Role): string | undefined =>
  p.vrrp.find((g) => g.role === role)?.name ?? hostsWithRole(p, role)[0]?.name
/** The VRRP group a host is a member of, if any. */
export const vrrpGroupOf = (p: Plan, host: string) => p.vrrp.find((g) => g.members.some((m) => m.host === host))
/** The client's plan entry (url, devices); a host that is no IoT client has none. */
export const clientOf = (p: Plan, host: string) => p.services.clients.find((c) => c.host === host)
/** The load generator's device ids (their keys are derived like every device's). */
export const benchDeviceIds = (p: Plan) =>
  Array.from({ length: p.telemetry.benchDevices }, (_, i) => `bench-${String(i + 1).padStart(4, '0')}`)
/** host -> the provider a bring-up makes it with. */
export const plannedProviders = (p: Plan): Record<string, Provider> =>
  Object.fromEntries(p.hosts.map((h) => [h.name, h.provider]))
/**
 * The same plan with TLS inside the cloud switched (npm run bench measures both ways):
 * no other field of the plan depends on it.
 */
export const withCloudTls = (p: Plan, cloudTls: boolean): Plan =>
  deepFreeze({ ...p, telemetry: { ...p.telemetry, cloudTls } })
