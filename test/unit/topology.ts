import t, { type Test } from 'tap'
import { stringify } from 'yaml'
import { ROLES, loadTopology, parseTopology, TopologyError, validateTopology } from '../../provision/topology.js'
import { topologyFile } from '../../provision/paths.js'

const base = () => ({
  name: 'lab',
  networks: {
    mgmt: { kind: 'management', cidr: '172.31.250.0/24', host_address: '172.31.250.1' },
    iot: { kind: 'lan', cidr: '10.10.1.0/24', gateway: 'gw-a' },
    inet: { kind: 'wan', cidr: '198.51.100.0/24' },
    cloud: { kind: 'lan', cidr: '10.20.0.0/24', gateway: 'gw-b' },
  },
  hosts: {
    client: { role: 'iot-client', interfaces: { mgmt: '172.31.250.10', iot: '10.10.1.10' } },
    'gw-a': { role: 'gateway', interfaces: { mgmt: '172.31.250.11', iot: '10.10.1.1', inet: '198.51.100.11' } },
    'gw-b': { role: 'gateway', interfaces: { mgmt: '172.31.250.12', inet: '198.51.100.12', cloud: '10.20.0.1' } },
    proxy: { role: 'proxy', interfaces: { mgmt: '172.31.250.20', cloud: '10.20.0.10' } },
  },
})

/** The problems a modified topology is refused with (fails the test if it is accepted). */
function refusal(t: Test, mutate: (raw: any) => void): string[] {
  const raw = base()
  mutate(raw)
  try {
    validateTopology(raw, 'test.yaml')
  } catch (e) {
    t.type(e, TopologyError)
    return (e as TopologyError).problems
  }
  t.fail('the topology was accepted')
  return []
}

t.test('the repository topology is valid and complete', async (t) => {
  const topo = loadTopology(topologyFile)
  // site-farm is the sites curve's (npm run bench -- --sites-curve adds it to a copy).
  t.same(
    new Set(topo.hosts.map((h) => h.role)),
    new Set(ROLES.filter((r) => r !== 'site-farm')),
    'every role has a host, but the bench-only site farm',
  )
  t.same(
    topo.networks.map((n) => n.kind).sort(),
    ['lan', 'lan', 'management', 'wan'],
    'two LANs, a simulated internet, management',
  )
  for (const h of topo.hosts) t.equal(h.interfaces[0].network, 'mgmt', `${h.name}: management is the first interface`)
})

t.test('a valid topology resolves bridges, prefixes and routes', async (t) => {
  const topo = validateTopology(base())
  t.equal(topo.networks.find((n) => n.name === 'iot')!.bridge, 'lab-iot')
  const client = topo.hosts.find((h) => h.name === 'client')!
  t.same(
    client.routes,
    [{ to: '10.20.0.0/24', via: '10.10.1.1', network: 'iot' }],
    'the client reaches the cloud LAN through its gateway',
  )
  t.same(topo.hosts.find((h) => h.name === 'proxy')!.routes, [
    { to: '10.10.1.0/24', via: '10.20.0.1', network: 'cloud' },
  ])
  t.same(topo.hosts.find((h) => h.name === 'gw-a')!.routes, [], 'a gateway needs no route through itself')
  t.equal(client.mgmt.address, '172.31.250.10')
  t.equal(client.interfaces[1].broadcast, '10.10.1.255')
})

t.test('adding a backend is a change of data', async (t) => {
  const raw: any = base()
  raw.hosts['backend-9'] = { role: 'backend', interfaces: { mgmt: '172.31.250.29', cloud: '10.20.0.29' } }
  const topo = validateTopology(raw)
  t.ok(topo.hosts.some((h) => h.name === 'backend-9' && h.role === 'backend'))
})

t.test('wrong topologies are refused with the field named', async (t) => {
  const cases: [string, (r: any) => void, RegExp][] = [
    [
      'duplicate address',
      (r) => {
        r.hosts.proxy.interfaces.cloud = '10.20.0.1'
      },
      /^hosts\.proxy\.interfaces\.cloud: duplicate address 10\.20\.0\.1: already used by hosts\.gw-b\.interfaces\.cloud/,
    ],
    [
      'duplicate management address',
      (r) => {
        r.hosts.proxy.interfaces.mgmt = '172.31.250.1'
      },
      /^hosts\.proxy\.interfaces\.mgmt: duplicate address .* networks\.mgmt\.host_address/,
    ],
    [
      'overlapping networks',
      (r) => {
        r.networks.cloud.cidr = '10.10.0.0/16'
      },
      /^networks\.cloud\.cidr: 10\.10\.0\.0\/16 overlaps networks\.iot\.cidr \(10\.10\.1\.0\/24\)/,
    ],
    [
      'host on an unknown network',
      (r) => {
        r.hosts.proxy.interfaces.dmz = '10.30.0.1'
      },
      /^hosts\.proxy\.interfaces\.dmz: unknown network "dmz"/,
    ],
    [
      'unknown role',
      (r) => {
        r.hosts.proxy.role = 'webserver'
      },
      /^hosts\.proxy\.role: unknown role "webserver": must be one of iot-client, gateway, proxy, backend, db/,
    ],
    [
      'address outside its network',
      (r) => {
        r.hosts.proxy.interfaces.cloud = '10.21.0.10'
      },
      /^hosts\.proxy\.interfaces\.cloud: 10\.21\.0\.10 is outside network cloud \(10\.20\.0\.0\/24\)/,
    ],
    [
      'network address used as a host',
      (r) => {
        r.hosts.proxy.interfaces.cloud = '10.20.0.0'
      },
      /^hosts\.proxy\.interfaces\.cloud: 10\.20\.0\.0 is the network address of network cloud/,
    ],
    [
      'broadcast address used as a host',
      (r) => {
        r.hosts.proxy.interfaces.cloud = '10.20.0.255'
      },
      /^hosts\.proxy\.interfaces\.cloud: 10\.20\.0\.255 is the broadcast address of network cloud/,
    ],
    [
      'a prefix too short for a lab network',
      (r) => {
        r.networks.inet.cidr = '198.0.0.0/7'
      },
      /^networks\.inet\.cidr: prefix \/7 is out of range: use \/8 to \/29/,
    ],
    [
      'a prefix too long for two hosts and a gateway',
      (r) => {
        r.networks.inet.cidr = '198.51.100.8/30'
        r.hosts['gw-a'].interfaces.inet = '198.51.100.9'
        r.hosts['gw-b'].interfaces.inet = '198.51.100.10'
      },
      /^networks\.inet\.cidr: prefix \/30 is out of range: use \/8 to \/29/,
    ],
    [
      'malformed address',
      (r) => {
        r.hosts.proxy.interfaces.cloud = '10.20.0.300'
      },
      /^hosts\.proxy\.interfaces\.cloud: must be an IPv4 address/,
    ],
    [
      "the build machine's uplink range",
      (r) => {
        r.networks.inet.cidr = '192.0.2.0/24'
      },
      /^networks\.inet\.cidr: 192\.0\.2\.0\/24 overlaps 192\.0\.2\.0\/24, the build machine's own uplink/,
    ],
    [
      'host bits in a network',
      (r) => {
        r.networks.iot.cidr = '10.10.1.5/24'
      },
      /^networks\.iot\.cidr: must be an IPv4 network/,
    ],
    [
      'unknown network kind',
      (r) => {
        r.networks.inet.kind = 'internet'
      },
      /^networks\.inet\.kind: must be one of management, lan, wan/,
    ],
    [
      'misspelt field',
      (r) => {
        r.hosts.proxy.interface = r.hosts.proxy.interfaces
      },
      /^hosts\.proxy\.interface: unknown field/,
    ],
    [
      'host without management',
      (r) => {
        delete r.hosts.proxy.interfaces.mgmt
      },
      /^hosts\.proxy\.interfaces: every host needs an address on the management network/,
    ],
    [
      'two management networks',
      (r) => {
        r.networks.mgmt2 = { kind: 'management', cidr: '172.31.251.0/24', host_address: '172.31.251.1' }
      },
      /^networks: exactly one network must have kind management; found 2/,
    ],
    [
      'gateway that is not a gateway',
      (r) => {
        r.networks.cloud.gateway = 'proxy'
      },
      /^networks\.cloud\.gateway: host proxy has role proxy, not gateway/,
    ],
    [
      'gateway not on its LAN',
      (r) => {
        r.networks.cloud.gateway = 'gw-a'
      },
      /^networks\.cloud\.gateway: host gw-a has no interface on cloud/,
    ],
    [
      'lab name too long for bridge names',
      (r) => {
        r.name = 'averylongname'
      },
      /^name: must be 2 to 8/,
    ],
  ]
  for (const [what, mutate, expected] of cases) {
    const problems = refusal(t, mutate)
    t.ok(
      problems.some((p) => expected.test(p)),
      `${what}: ${problems.join(' | ') || 'accepted'}`,
    )
  }
})

t.test('every problem is reported at once, and the error says what to do', async (t) => {
  const raw: any = base()
  raw.hosts.proxy.role = 'webserver'
  raw.hosts.client.interfaces.iot = '10.99.0.1'
  const err = t.throws(() => validateTopology(raw, 'topology.yaml')) as unknown as TopologyError
  t.equal(err.problems.length, 2)
  t.match(err.message, /^topology\.yaml is not a valid topology:\n/)
  t.match(err.message, /Fix these fields and run the command again\.$/)
})

t.test('YAML that does not parse is refused, naming the file', async (t) => {
  t.throws(
    () => parseTopology('name: [unclosed', 'broken.yaml'),
    /broken\.yaml is not a valid topology:\n  - is not valid YAML/,
  )
  t.throws(() => parseTopology(stringify(['a', 'list']), 'list.yaml'), /the top level must be a mapping/)
  t.throws(() => loadTopology('/nonexistent/topology.yaml'), /cannot be read/)
})

t.test('telemetry: devices per client as data, defaults, refusals with the field named', async (t) => {
  const plain = validateTopology(base())
  t.match(plain.telemetry, {
    devicesPerClient: 4,
    intervalMs: 1000,
    benchDevices: 1000,
    port: 8080,
    outboxMaxMb: 1024,
    batch: 100,
  })
  t.same(
    plain.telemetry.devices.map((d) => d.id),
    ['client-01', 'client-02', 'client-03', 'client-04'],
    "ids from the client host's name",
  )
  const raw: any = base()
  raw.telemetry = {
    devices: 2,
    interval_ms: 250,
    bench_devices: 3,
    port: 9000,
    server: '10.20.0.10',
    outbox_max_mb: 64,
    batch: 1,
  }
  raw.hosts.client2 = { role: 'iot-client', interfaces: { mgmt: '172.31.250.13', iot: '10.10.1.13' } }
  const two = validateTopology(raw)
  t.same(two.telemetry.devices, [
    { id: 'client-01', host: 'client' },
    { id: 'client-02', host: 'client' },
    { id: 'client2-01', host: 'client2' },
    { id: 'client2-02', host: 'client2' },
  ])
  t.match(two.telemetry, {
    intervalMs: 250,
    benchDevices: 3,
    port: 9000,
    server: '10.20.0.10',
    outboxMaxMb: 64,
    batch: 1,
  })
  const problems = refusal(t, (r) => {
    r.telemetry = {
      devices: 0,
      interval_ms: 'fast',
      port: 80,
      server: 'proxy',
      colour: 'red',
      outbox_max_mb: 0,
      batch: 5000,
    }
  })
  t.match(
    problems.join('\n'),
    /telemetry\.outbox_max_mb: must be a whole number from 1 to 1048576 \(the cap on each IoT client's outbox, MiB\); got 0/,
  )
  t.match(
    problems.join('\n'),
    /telemetry\.batch: must be a whole number from 1 to 1000 \(readings per request; 1 sends each alone\); got 5000/,
  )
  t.match(problems.join('\n'), /telemetry\.colour: unknown field/)
  t.match(problems.join('\n'), /telemetry\.devices: must be a whole number from 1 to 1000/)
  t.match(problems.join('\n'), /telemetry\.interval_ms: must be a whole number from 10/)
  t.match(problems.join('\n'), /telemetry\.port: must be a whole number from 1024/)
  t.match(problems.join('\n'), /telemetry\.server: must be an IPv4 address/)
})

t.test('a host name made only of hex digits is refused: Vagrant would take it for a machine id prefix', async (t) => {
  for (const name of ['db', 'cafe', 'a1']) {
    const problems = refusal(t, (r) => {
      r.hosts[name] = { role: 'db', interfaces: { mgmt: '172.31.250.30', cloud: '10.20.0.30' } }
    })
    t.match(
      problems.join('\n'),
      new RegExp(
        `hosts\\.${name}: a host name made only of hex digits is refused: Vagrant takes "${name}" for the id prefix`,
      ),
    )
  }
  const raw: any = base()
  raw.hosts.database = { role: 'backend', interfaces: { mgmt: '172.31.250.35', cloud: '10.20.0.35' } }
  raw.hosts['db-1'] = { role: 'backend', interfaces: { mgmt: '172.31.250.36', cloud: '10.20.0.36' } }
  t.ok(validateTopology(raw), '"database" and "db-1" are fine')
})
