// Every refusal of a malformed topology, word for word: the field it names and what it
// says to do, one case a line, and the edges that must still be accepted (/29, 128 MiB,
// port 65535). A person reads these messages to fix their file; a changed message
// shows here. test/unit/topology.ts has the resolved topology and the addressing rules.
import t from 'tap'
import { validateTopology, TopologyError } from '../../provision/topology.js'

const base = (): any => ({
  name: 'lab',
  networks: {
    mgmt: { kind: 'management', cidr: '172.31.250.0/24', host_address: '172.31.250.1' },
    iot: {
      kind: 'lan',
      cidr: '10.10.1.0/24',
      gateway: 'gw-a',
      old_server: { address: '10.10.1.100', host: 'proxy', ports: [80] },
    },
    inet: { kind: 'wan', cidr: '198.51.100.0/24' },
    cloud: { kind: 'lan', cidr: '10.20.0.0/24', gateway: 'gw-b' },
  },
  vpn: { hub: 'gw-b', auth: 'pubkey' },
  hosts: {
    client: { role: 'iot-client', interfaces: { mgmt: '172.31.250.10', iot: '10.10.1.10' } },
    'gw-a': { role: 'gateway', interfaces: { mgmt: '172.31.250.11', iot: '10.10.1.1', inet: '198.51.100.11' } },
    'gw-b': { role: 'gateway', interfaces: { mgmt: '172.31.250.12', inet: '198.51.100.12', cloud: '10.20.0.1' } },
    proxy: { role: 'proxy', interfaces: { mgmt: '172.31.250.20', cloud: '10.20.0.10' } },
  },
})

/** The base with its proxy in a pair, `front`, which the old server address leads to. */
function pair(r: any): { members: string[]; addresses: Record<string, string> } {
  const front = { members: ['proxy', 'proxy-2'], addresses: { cloud: '10.20.0.100' } as Record<string, string> }
  r.hosts['proxy-2'] = { role: 'proxy', interfaces: { mgmt: '172.31.250.21', cloud: '10.20.0.12' } }
  r.groups = { front }
  r.networks.iot.old_server.host = 'front'
  return front
}

/** The base with its hub as a pair, `hub` (gw-b and gw-c): the VPN and the cloud LAN name it. */
function hubPair(r: any): { members: string[]; addresses: Record<string, string> } {
  const hub = {
    members: ['gw-b', 'gw-c'],
    addresses: { cloud: '10.20.0.5', inet: '198.51.100.5' } as Record<string, string>,
  }
  r.hosts['gw-c'] = {
    role: 'gateway',
    interfaces: { mgmt: '172.31.250.13', inet: '198.51.100.13', cloud: '10.20.0.2' },
  }
  r.groups = { ...r.groups, hub }
  r.vpn.hub = 'hub'
  r.networks.cloud.gateway = 'hub'
  return hub
}

/** What the topology changed by `change` is refused with; [] when it is accepted. */
function problems(change: (r: any) => void): string[] {
  const r = base()
  change(r)
  try {
    validateTopology(r, 't.yaml')
    return []
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e
    return e.problems
  }
}

t.test('the base topology is accepted (the control)', async (t) => {
  t.same(
    problems(() => {}),
    [],
  )
})

const cases: [string, (r: any) => void, string[]][] = [
  [
    'no networks',
    (r) => {
      r.networks = {}
    },
    [
      'networks: must be a mapping of network name to {kind, cidr}',
      'hosts.client.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.client.interfaces.iot: unknown network "iot": networks are (none)',
      'hosts.gw-a.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.gw-a.interfaces.iot: unknown network "iot": networks are (none)',
      'hosts.gw-a.interfaces.inet: unknown network "inet": networks are (none)',
      'hosts.gw-b.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.gw-b.interfaces.inet: unknown network "inet": networks are (none)',
      'hosts.gw-b.interfaces.cloud: unknown network "cloud": networks are (none)',
      'hosts.proxy.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.proxy.interfaces.cloud: unknown network "cloud": networks are (none)',
      'hosts.gw-a.interfaces: gateway gw-a shares no wan network with the hub gw-b',
      'vpn.hub: hub gw-b is the gateway of no lan network',
    ],
  ],
  [
    'networks a list',
    (r) => {
      r.networks = []
    },
    [
      'networks: must be a mapping of network name to {kind, cidr}',
      'hosts.client.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.client.interfaces.iot: unknown network "iot": networks are (none)',
      'hosts.gw-a.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.gw-a.interfaces.iot: unknown network "iot": networks are (none)',
      'hosts.gw-a.interfaces.inet: unknown network "inet": networks are (none)',
      'hosts.gw-b.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.gw-b.interfaces.inet: unknown network "inet": networks are (none)',
      'hosts.gw-b.interfaces.cloud: unknown network "cloud": networks are (none)',
      'hosts.proxy.interfaces.mgmt: unknown network "mgmt": networks are (none)',
      'hosts.proxy.interfaces.cloud: unknown network "cloud": networks are (none)',
      'hosts.gw-a.interfaces: gateway gw-a shares no wan network with the hub gw-b',
      'vpn.hub: hub gw-b is the gateway of no lan network',
    ],
  ],
  [
    'bad network name',
    (r) => {
      r.networks['Net-1'] = { kind: 'wan', cidr: '203.0.113.0/24' }
    },
    [
      'networks.Net-1: a network name is 1 to 6 lower-case letters or digits, starting with a letter (it names a bridge)',
    ],
  ],
  [
    'network not a mapping',
    (r) => {
      r.networks.x = 'wan'
    },
    ['networks.x: must be a mapping with kind and cidr'],
  ],
  [
    'host_address on a lan',
    (r) => {
      r.networks.iot.host_address = '10.10.1.2'
    },
    ['networks.iot.host_address: only a management network has a host_address'],
  ],
  [
    'host_address not an address',
    (r) => {
      r.networks.mgmt.host_address = 'router'
    },
    ['networks.mgmt.host_address: must be an IPv4 address; got "router"'],
  ],
  [
    'host_address outside',
    (r) => {
      r.networks.mgmt.host_address = '172.31.251.1'
    },
    ['networks.mgmt.host_address: 172.31.251.1 is not a host address of 172.31.250.0/24'],
  ],
  [
    'host_address the broadcast',
    (r) => {
      r.networks.mgmt.host_address = '172.31.250.255'
    },
    ['networks.mgmt.host_address: 172.31.250.255 is not a host address of 172.31.250.0/24'],
  ],
  [
    'management without host_address',
    (r) => {
      delete r.networks.mgmt.host_address
    },
    ["networks.mgmt.host_address: a management network needs the provisioning machine's address on it"],
  ],
  [
    'gateway on a wan',
    (r) => {
      r.networks.inet.gateway = 'gw-a'
    },
    ['networks.inet.gateway: only a lan network has a gateway'],
  ],
  [
    'gateway not a string',
    (r) => {
      r.networks.iot.gateway = 7
    },
    [
      'networks.iot.gateway: must be the name of a gateway host',
      'hosts.gw-a: gateway gw-a is the gateway of no lan network (set networks.NAME.gateway)',
      'networks.iot.old_server: only a lan network with a gateway can keep an old server address',
    ],
  ],
  [
    'gateway unknown host',
    (r) => {
      r.networks.iot.gateway = 'gw-z'
    },
    [
      'networks.iot.gateway: unknown host or group "gw-z"',
      'hosts.gw-a: gateway gw-a is the gateway of no lan network (set networks.NAME.gateway)',
    ],
  ],
  [
    'gateway not on its lan',
    (r) => {
      r.networks.iot.gateway = 'gw-b'
    },
    [
      'networks.iot.gateway: host gw-b has no interface on iot',
      'hosts.gw-a: gateway gw-a is the gateway of no lan network (set networks.NAME.gateway)',
    ],
  ],
  [
    'prefix /8 ok, /29 ok',
    (r) => {
      r.networks.inet.cidr = '198.51.100.0/29'
      r.hosts['gw-a'].interfaces.inet = '198.51.100.3'
      r.hosts['gw-b'].interfaces.inet = '198.51.100.4'
    },
    [],
  ],
  [
    'no hosts',
    (r) => {
      r.hosts = {}
    },
    [
      'hosts: must be a mapping of host name to {role, interfaces}',
      'networks.iot.gateway: unknown host or group "gw-a"',
      'networks.cloud.gateway: unknown host or group "gw-b"',
      'vpn.hub: must name the cloud\'s gateway host or gateway group; got "gw-b"',
      'networks.iot.old_server: an old server address is forwarded through the VPN: the topology needs a vpn section',
    ],
  ],
  [
    'hosts a list',
    (r) => {
      r.hosts = []
    },
    [
      'hosts: must be a mapping of host name to {role, interfaces}',
      'networks.iot.gateway: unknown host or group "gw-a"',
      'networks.cloud.gateway: unknown host or group "gw-b"',
      'vpn.hub: must name the cloud\'s gateway host or gateway group; got "gw-b"',
      'networks.iot.old_server: an old server address is forwarded through the VPN: the topology needs a vpn section',
    ],
  ],
  [
    'bad host name',
    (r) => {
      r.hosts['Proxy_2'] = { role: 'backend', interfaces: { mgmt: '172.31.250.21' } }
    },
    ['hosts.Proxy_2: a host name is lower-case letters, digits and dashes, starting with a letter'],
  ],
  [
    'a pair accepted: two proxies behind a virtual address the old server leads to',
    (r) => {
      pair(r)
    },
    [],
  ],
  [
    'two proxies outside a group',
    (r) => {
      r.hosts['proxy-2'] = { role: 'proxy', interfaces: { mgmt: '172.31.250.21', cloud: '10.20.0.12' } }
    },
    [
      'hosts.proxy: proxy, proxy-2 all have role proxy: list them as the members of one group (groups.NAME.members) so that one address leads to them',
    ],
  ],
  [
    'group address outside its network',
    (r) => {
      pair(r).addresses.cloud = '10.30.0.10'
    },
    [
      'groups.front.addresses.cloud: must be a host address of network cloud (10.20.0.0/24); got "10.30.0.10"',
      'networks.iot.old_server.host: must name a host or group on the hub\'s LAN (cloud); got "front"',
    ],
  ],
  [
    'group address shared with a host',
    (r) => {
      pair(r).addresses.cloud = '10.20.0.12'
    },
    [
      'groups.front.addresses.cloud: duplicate address 10.20.0.12: already used by hosts.proxy-2.interfaces.cloud',
      'networks.iot.old_server.host: must name a host or group on the hub\'s LAN (cloud); got "front"',
    ],
  ],
  [
    'group address shared with another group',
    (r) => {
      pair(r)
      r.hosts['proxy-3'] = { role: 'proxy', interfaces: { mgmt: '172.31.250.22', cloud: '10.20.0.13' } }
      r.hosts['proxy-4'] = { role: 'proxy', interfaces: { mgmt: '172.31.250.23', cloud: '10.20.0.14' } }
      r.groups.back = { members: ['proxy-3', 'proxy-4'], addresses: { cloud: '10.20.0.100' } }
    },
    ['groups.back.addresses.cloud: duplicate address 10.20.0.100: already used by groups.front.addresses.cloud'],
  ],
  [
    'group address on management, on an unknown network, on a network a member lacks',
    (r) => {
      pair(r).addresses = { mgmt: '172.31.250.99', dmz: '10.99.0.1', iot: '10.10.1.99' }
    },
    [
      'groups.front.addresses.mgmt: the management network carries no service',
      'groups.front.addresses.dmz: unknown network "dmz"',
      'groups.front.addresses.iot: proxy, proxy-2 has no interface on iot: every member needs one',
      'networks.iot.old_server.host: must name a host or group on the hub\'s LAN (cloud); got "front"',
    ],
  ],
  [
    'group of one, of an unknown host, of mixed roles, of a role not built for groups',
    (r) => {
      pair(r).members = ['proxy']
      r.groups.bb = { members: ['proxy', 'ghost'], addresses: { cloud: '10.20.0.50' } }
      r.groups.cc = { members: ['proxy', 'client'], addresses: { cloud: '10.20.0.51' } }
      r.groups.dd = { members: ['client', 'client-2'], addresses: { iot: '10.10.1.50' } }
      r.hosts['client-2'] = { role: 'iot-client', interfaces: { mgmt: '172.31.250.15', iot: '10.10.1.15' } }
    },
    [
      'groups.front.members: must list two or more different hosts; got ["proxy"]',
      'groups.bb.members: unknown host "ghost"',
      'groups.cc.members: members must share one role; got proxy (proxy), client (iot-client)',
      'groups.dd.members: role iot-client cannot be grouped: groups are built for proxy, gateway, db',
      'hosts.proxy: proxy, proxy-2 all have role proxy: list them as the members of one group (groups.NAME.members) so that one address leads to them',
      'networks.iot.old_server.host: must name a host or group on the hub\'s LAN (cloud); got "front"',
    ],
  ],
  [
    'a database cluster of three: accepted',
    (r) => {
      for (const i of [1, 2, 3])
        r.hosts[`db-${i}`] = { role: 'db', interfaces: { mgmt: `172.31.250.3${i}`, cloud: `10.20.0.3${i}` } }
      r.groups = { store: { members: ['db-1', 'db-2', 'db-3'], addresses: { cloud: '10.20.0.30' } } }
    },
    [],
  ],
  [
    'a database cluster of two, two database hosts outside a group',
    (r) => {
      for (const i of [1, 2, 3])
        r.hosts[`db-${i}`] = { role: 'db', interfaces: { mgmt: `172.31.250.3${i}`, cloud: `10.20.0.3${i}` } }
      r.groups = { store: { members: ['db-1', 'db-2'], addresses: { cloud: '10.20.0.30' } } }
    },
    [
      'groups.store.members: a group of role db has 3 members (a majority must survive the loss of one); got 2',
      'hosts.db-1: db-1, db-2, db-3 all have role db: list them as the members of one group (groups.NAME.members) so that one address leads to them',
    ],
  ],
  ['a hub pair: accepted, the sites reach its address, the cloud routes through its address', (r) => hubPair(r), []],
  [
    'a hub pair without an internet address, a LAN gateway group without an address there',
    (r) => {
      hubPair(r).addresses = { cloud: '10.20.0.5' }
      r.networks.iot.gateway = 'hub'
    },
    [
      'networks.iot.gateway: group hub has no address on iot (groups.hub.addresses.iot)',
      'hosts.gw-a.interfaces: gateway gw-a shares no wan network with the hub hub (groups.hub.addresses)',
    ],
  ],
  [
    'the hub named by a proxy pair',
    (r) => {
      pair(r)
      r.vpn.hub = 'front'
    },
    [
      'vpn.hub: group front has role proxy, not gateway',
      'networks.iot.old_server: an old server address is forwarded through the VPN: the topology needs a vpn section',
    ],
  ],
  [
    'a pair of site gateways beside a hub pair',
    (r) => {
      hubPair(r)
      r.hosts['gw-a2'] = {
        role: 'gateway',
        interfaces: { mgmt: '172.31.250.14', iot: '10.10.1.2', inet: '198.51.100.14' },
      }
      r.groups.site = { members: ['gw-a', 'gw-a2'], addresses: { iot: '10.10.1.3' } }
      r.networks.iot.gateway = 'site'
    },
    [
      "groups.site: only the hub can be a gateway pair today (vpn.hub: hub); an IoT site's gateway is one host",
      // A site's LAN led by a pair leaves both without a LAN of their own.
      'hosts.gw-a: gateway gw-a is the gateway of no lan network (set networks.NAME.gateway)',
      'hosts.gw-a2: gateway gw-a2 is the gateway of no lan network (set networks.NAME.gateway)',
    ],
  ],
  [
    'a host in two groups; a group named like a host; groups not a mapping of mappings',
    (r) => {
      pair(r)
      r.hosts['proxy-3'] = { role: 'proxy', interfaces: { mgmt: '172.31.250.22', cloud: '10.20.0.13' } }
      r.groups.client = { members: ['proxy-2', 'proxy-3'], addresses: { cloud: '10.20.0.60' } }
      r.groups.ee = 'proxy'
    },
    [
      "groups.client: client is also a host's name: a group's name stands for its members, so it must be its own",
      'groups.client.members: proxy-2 is already a member of groups.front',
      'groups.ee: must be a mapping with members (host names) and addresses (network name to virtual address)',
    ],
  ],
  [
    'host not a mapping',
    (r) => {
      r.hosts.extra = 'proxy'
    },
    ['hosts.extra: must be a mapping with role and interfaces'],
  ],
  [
    'memory too small',
    (r) => {
      r.hosts.proxy.memory = 127
    },
    ['hosts.proxy.memory: must be a whole number of MiB, at least 128'],
  ],
  [
    'memory 128 ok, cpus 1 ok',
    (r) => {
      r.hosts.proxy.memory = 128
      r.hosts.proxy.cpus = 1
    },
    [],
  ],
  [
    'memory not integer',
    (r) => {
      r.hosts.proxy.memory = 256.5
    },
    ['hosts.proxy.memory: must be a whole number of MiB, at least 128'],
  ],
  [
    'cpus zero',
    (r) => {
      r.hosts.proxy.cpus = 0
    },
    ['hosts.proxy.cpus: must be a number of CPUs above 0, in hundredths at most (0.1 is a tenth of a core)'],
  ],
  [
    'cpus a string',
    (r) => {
      r.hosts.proxy.cpus = '2'
    },
    ['hosts.proxy.cpus: must be a number of CPUs above 0, in hundredths at most (0.1 is a tenth of a core)'],
  ],
  [
    'cpus a tenth of a core (a container capped)',
    (r) => {
      r.hosts.proxy.cpus = 0.1
    },
    [],
  ],
  [
    'no interfaces',
    (r) => {
      r.hosts.proxy.interfaces = {}
    },
    [
      "hosts.proxy.interfaces: must map network names to this host's address on each",
      'networks.iot.old_server.host: must name a host or group on the hub\'s LAN (cloud); got "proxy"',
    ],
  ],
  [
    'interfaces a list',
    (r) => {
      r.hosts.proxy.interfaces = ['mgmt']
    },
    [
      "hosts.proxy.interfaces: must map network names to this host's address on each",
      'networks.iot.old_server.host: must name a host or group on the hub\'s LAN (cloud); got "proxy"',
    ],
  ],
  [
    'interface on unknown network',
    (r) => {
      r.hosts.proxy.interfaces.dmz = '10.30.0.1'
    },
    ['hosts.proxy.interfaces.dmz: unknown network "dmz": networks are mgmt, iot, inet, cloud'],
  ],
  [
    'interface address not a string',
    (r) => {
      r.hosts.proxy.interfaces.cloud = 10
    },
    [
      'hosts.proxy.interfaces.cloud: must be an IPv4 address; got 10',
      'networks.iot.old_server.host: must name a host or group on the hub\'s LAN (cloud); got "proxy"',
    ],
  ],
  [
    'no mgmt interface',
    (r) => {
      delete r.hosts.proxy.interfaces.mgmt
    },
    ["hosts.proxy.interfaces: every host needs an address on the management network, the provisioner's only way in"],
  ],
  [
    'host on two lans not its gateway',
    (r) => {
      r.hosts.proxy.interfaces.iot = '10.10.1.20'
    },
    [],
  ],
  [
    'vpn not a mapping',
    (r) => {
      r.vpn = 'gw-b'
    },
    [
      'vpn: must be a mapping with hub and auth',
      'networks.iot.old_server: an old server address is forwarded through the VPN: the topology needs a vpn section',
    ],
  ],
  [
    'vpn unknown key',
    (r) => {
      r.vpn.mode = 'tunnel'
    },
    ['vpn.mode: unknown field (allowed: hub, auth)'],
  ],
  [
    'site with no lan',
    (r) => {
      r.hosts['gw-c'] = { role: 'gateway', interfaces: { mgmt: '172.31.250.13', inet: '198.51.100.13' } }
    },
    ['hosts.gw-c: gateway gw-c is the gateway of no lan network (set networks.NAME.gateway)'],
  ],
  [
    'hub with no lan',
    (r) => {
      delete r.networks.cloud.gateway
      delete r.networks.iot.old_server
    },
    ['vpn.hub: hub gw-b is the gateway of no lan network'],
  ],
  [
    'old_server not a mapping',
    (r) => {
      r.networks.iot.old_server = '10.10.1.100'
    },
    ['networks.iot.old_server: must be a mapping with address, host and ports'],
  ],
  [
    'old_server on a wan',
    (r) => {
      r.networks.inet.old_server = { address: '198.51.100.100', host: 'proxy', ports: [80] }
    },
    ['networks.inet.old_server: only a lan network with a gateway can keep an old server address'],
  ],
  [
    'old_server unknown key',
    (r) => {
      r.networks.iot.old_server.proto = 'tcp'
    },
    ['networks.iot.old_server.proto: unknown field (allowed: address, host, ports)'],
  ],
  [
    'old_server address not an address',
    (r) => {
      r.networks.iot.old_server.address = 'old'
    },
    ['networks.iot.old_server.address: must be an IPv4 address; got "old"'],
  ],
  [
    'old_server ports missing (default 80)',
    (r) => {
      delete r.networks.iot.old_server.ports
    },
    [],
  ],
  [
    'old_server ports empty',
    (r) => {
      r.networks.iot.old_server.ports = []
    },
    ['networks.iot.old_server.ports: must be a list of TCP ports (1 to 65535)'],
  ],
  [
    'old_server port 65536',
    (r) => {
      r.networks.iot.old_server.ports = [80, 65536]
    },
    ['networks.iot.old_server.ports: must be a list of TCP ports (1 to 65535)'],
  ],
  [
    'old_server ports 1 and 65535 ok',
    (r) => {
      r.networks.iot.old_server.ports = [1, 65535]
    },
    [],
  ],
  [
    'old_server ports not a list',
    (r) => {
      r.networks.iot.old_server.ports = 80
    },
    ['networks.iot.old_server.ports: must be a list of TCP ports (1 to 65535)'],
  ],
  [
    'telemetry not a mapping',
    (r) => {
      r.telemetry = 5
    },
    [
      'telemetry: must be a mapping with any of devices, interval_ms, bench_devices, port, server, outbox_max_mb, batch, cloud_tls',
    ],
  ],
  [
    'telemetry devices 0',
    (r) => {
      r.telemetry = { devices: 0 }
    },
    ['telemetry.devices: must be a whole number from 1 to 1000 (simulated devices on each iot-client host); got 0'],
  ],
  [
    'telemetry devices over max',
    (r) => {
      r.telemetry = { devices: 100001 }
    },
    [
      'telemetry.devices: must be a whole number from 1 to 1000 (simulated devices on each iot-client host); got 100001',
    ],
  ],
  [
    'telemetry interval',
    (r) => {
      r.telemetry = { interval_ms: 5 }
    },
    [
      'telemetry.interval_ms: must be a whole number from 10 to 3600000 (milliseconds between two readings of a device); got 5',
    ],
  ],
  [
    'telemetry bench_devices',
    (r) => {
      r.telemetry = { bench_devices: -1 }
    },
    [
      'telemetry.bench_devices: must be a whole number from 0 to 100000 (devices the load generator may simulate); got -1',
    ],
  ],
  [
    'telemetry port',
    (r) => {
      r.telemetry = { port: 70000 }
    },
    ["telemetry.port: must be a whole number from 1024 to 65535 (the ingest servers' TCP port); got 70000"],
  ],
  [
    'telemetry cloud_tls',
    (r) => {
      r.telemetry = { cloud_tls: 'yes' }
    },
    ['telemetry.cloud_tls: must be true or false (mutual TLS inside the cloud); got "yes"'],
  ],
  [
    'telemetry server',
    (r) => {
      r.telemetry = { server: 'ingest' }
    },
    ['telemetry.server: must be an IPv4 address (the clients send to http://ADDRESS/readings); got "ingest"'],
  ],
  [
    'telemetry unknown',
    (r) => {
      r.telemetry = { rate: 5 }
    },
    [
      'telemetry.rate: unknown field (allowed: devices, interval_ms, bench_devices, port, server, outbox_max_mb, batch, cloud_tls)',
    ],
  ],
  [
    'name bad',
    (r) => {
      r.name = 'Lab 1'
    },
    [
      'name: must be 2 to 8 lower-case letters or digits, starting with a letter (it prefixes bridge and container names); got "Lab 1"',
    ],
  ],
  [
    'name missing',
    (r) => {
      delete r.name
    },
    [
      'name: must be 2 to 8 lower-case letters or digits, starting with a letter (it prefixes bridge and container names); got undefined',
    ],
  ],
  [
    'top unknown',
    (r) => {
      r.extra = 1
    },
    ['extra: unknown field (allowed: name, networks, hosts, groups, vpn, site_farm, telemetry)'],
  ],
  [
    'name 9 chars',
    (r) => {
      r.name = 'abcdefghi'
    },
    [
      'name: must be 2 to 8 lower-case letters or digits, starting with a letter (it prefixes bridge and container names); got "abcdefghi"',
    ],
  ],
]

for (const [what, change, want] of cases) {
  t.test(`${what}: ${want.length ? 'refused, naming the field' : 'accepted'}`, async (t) => {
    t.same(problems(change), want)
  })
}

t.test('a topology that is no mapping at all, or no YAML', async (t) => {
  for (const raw of [['a'], null, 'name: lab']) {
    const e = (() => {
      try {
        validateTopology(raw, 't.yaml')
      } catch (x) {
        return x as TopologyError
      }
    })()
    t.same(e?.problems, ['the top level must be a mapping with name, networks and hosts'], JSON.stringify(raw))
  }
  const e = (() => {
    try {
      validateTopology({ ...base(), name: 'X' }, 'my.yaml')
    } catch (x) {
      return x as Error
    }
  })()!
  t.equal(e.name, 'TopologyError')
  t.equal(
    e.message,
    'my.yaml is not a valid topology:\n  - name: must be 2 to 8 lower-case letters or digits, starting with a letter (it prefixes bridge and container names); got "X"\nFix these fields and run the command again.',
    'the file, each problem on its own line, and what to do',
  )
})
