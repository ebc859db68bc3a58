// The VPN as data: tunnels derived from the plan, refused when wrong, and rendered
// into strongSwan and nftables configuration for one site or many.
import t from 'tap'
import { ipsecModeFor } from '../../provision/facts.js'
import { gateway, swanctlVars, tunnelsOf } from '../../provision/roles/gateway.js'
import type { Context } from '../../provision/runner.js'
import { TopologyError, planOf } from '../../provision/plan.js'
import { renderFile } from '../../provision/template.js'
import { FakeHost } from '../lib/fake.js'

const twoSites = () => ({
  name: 'lab',
  networks: {
    mgmt: { kind: 'management', cidr: '172.31.250.0/24', host_address: '172.31.250.1' },
    iot: {
      kind: 'lan',
      cidr: '10.10.1.0/24',
      gateway: 'gw-iot',
      old_server: { address: '10.10.1.100', host: 'proxy', ports: [80] },
    },
    iot2: { kind: 'lan', cidr: '10.10.2.0/24', gateway: 'gw-iot2' },
    inet: { kind: 'wan', cidr: '198.51.100.0/24' },
    cloud: { kind: 'lan', cidr: '10.20.0.0/24', gateway: 'gw-cloud' },
  },
  vpn: { hub: 'gw-cloud', auth: 'pubkey' },
  hosts: {
    'gw-iot': { role: 'gateway', interfaces: { mgmt: '172.31.250.11', iot: '10.10.1.1', inet: '198.51.100.11' } },
    'gw-iot2': { role: 'gateway', interfaces: { mgmt: '172.31.250.13', iot2: '10.10.2.1', inet: '198.51.100.13' } },
    'gw-cloud': { role: 'gateway', interfaces: { mgmt: '172.31.250.12', inet: '198.51.100.12', cloud: '10.20.0.1' } },
    proxy: { role: 'proxy', interfaces: { mgmt: '172.31.250.20', cloud: '10.20.0.10' } },
  },
})

function ctxFor(
  raw: object,
  host: string,
  mode: 'kernel' | 'libipsec' = 'libipsec',
  stateDir = '/nonexistent',
): Context {
  const plan = planOf(raw)
  const self = plan.hosts.find((h) => h.name === host)!
  return {
    host: new FakeHost(host),
    plan,
    self,
    dryRun: true,
    stateDir,
    facts: {
      addresses: [],
      mgmtInterface: 'mgmt',
      virtualization: 'lxc',
      kernel: 'test',
      ipsecMode: mode,
      interfaceOf: Object.fromEntries(self.interfaces.map((i) => [i.network, i.network])),
    },
  }
}

t.test('every gateway but the hub is a site with its own tunnel to the hub', async (t) => {
  const topo = planOf(twoSites())
  t.same(
    topo.vpn!.tunnels.map((x) => [x.name, x.siteAddress, x.hubAddress, x.siteSubnets, x.hubSubnets]),
    [
      ['gw-iot', '198.51.100.11', '198.51.100.12', ['10.10.1.0/24'], ['10.20.0.0/24']],
      ['gw-iot2', '198.51.100.13', '198.51.100.12', ['10.10.2.0/24'], ['10.20.0.0/24']],
    ],
  )
  t.same(topo.networks.find((n) => n.name === 'iot')!.oldServer, {
    address: '10.10.1.100',
    host: 'proxy',
    target: '10.20.0.10',
    ports: [80],
  })
})

t.test('the hub gets one connection per site, each with its own identity and subnets', async (t) => {
  const ctx = ctxFor(twoSites(), 'gw-cloud')
  t.equal(tunnelsOf(ctx).length, 2)
  const conf = renderFile('gateway/swanctl.conf', swanctlVars(ctx))
  t.match(
    conf,
    /gw-iot \{[\s\S]*remote_addrs = 198\.51\.100\.11[\s\S]*id = gw-iot\.lab[\s\S]*remote_ts = 10\.10\.1\.0\/24/,
  )
  t.match(
    conf,
    /gw-iot2 \{[\s\S]*remote_addrs = 198\.51\.100\.13[\s\S]*id = gw-iot2\.lab[\s\S]*remote_ts = 10\.10\.2\.0\/24/,
  )
  t.equal(conf.match(/proposals = chacha20poly1305-prfsha512-curve25519$/gm)?.length, 2, 'strict IKE proposal on each')
  t.equal(conf.match(/esp_proposals = chacha20poly1305-curve25519$/gm)?.length, 2, 'strict ESP proposal on each')
  t.equal(conf.match(/revocation = strict/g)?.length, 2, 'revocation enforced on each')
  t.notMatch(conf, /default/, 'no default proposals appended')
  t.match(conf, /start_action = none/, 'the hub waits for the sites')
  const site = renderFile('gateway/swanctl.conf', swanctlVars(ctxFor(twoSites(), 'gw-iot2')))
  t.match(
    site,
    /dpd_action = restart\n\s*start_action = start\n\s*close_action = start/,
    'a site initiates and keeps its tunnel',
  )
})

t.test('a side with two LANs offers both as its traffic selectors, on each end of the tunnel', async (t) => {
  const raw: any = twoSites()
  raw.networks.cloud2 = { kind: 'lan', cidr: '10.20.1.0/24', gateway: 'gw-cloud' }
  raw.hosts['gw-cloud'].interfaces.cloud2 = '10.20.1.1'
  const hub = renderFile('gateway/swanctl.conf', swanctlVars(ctxFor(raw, 'gw-cloud')))
  t.match(
    hub,
    /gw-iot \{[\s\S]*?local_ts = 10\.20\.0\.0\/24,10\.20\.1\.0\/24\n\s*remote_ts = 10\.10\.1\.0\/24\n/,
    "the hub: both of its LANs local, the site's remote",
  )
  const site = renderFile('gateway/swanctl.conf', swanctlVars(ctxFor(raw, 'gw-iot')))
  t.match(
    site,
    /local_ts = 10\.10\.1\.0\/24\n\s*remote_ts = 10\.20\.0\.0\/24,10\.20\.1\.0\/24\n/,
    "the site: the hub's two LANs remote",
  )
})

t.test(
  'pre-shared keys: made once per tunnel on the provisioning machine (0600) and written only into the secrets file',
  async (t) => {
    const dir = t.testdir({})
    const raw: any = twoSites()
    t.same(
      Object.keys(swanctlVars(ctxFor(raw, 'gw-cloud', 'libipsec', dir)).tunnels[0]).includes('psk'),
      false,
      'pubkey: no PSK in the variables',
    )
    const fs = await import('node:fs')
    t.notOk(fs.existsSync(`${dir}/secrets`), 'and none made')
    raw.vpn.auth = 'psk'
    const conf = renderFile('gateway/swanctl.conf', swanctlVars(ctxFor(raw, 'gw-iot', 'libipsec', dir)))
    t.match(conf, /auth = psk/, 'the connection authenticates by PSK')
    t.notMatch(conf, /secret|0s/, 'the tunnel file holds no key')
    const secrets = renderFile('gateway/secrets.conf', swanctlVars(ctxFor(raw, 'gw-iot', 'libipsec', dir), true))
    const key = fs.readFileSync(`${dir}/secrets/psk-gw-iot`, 'utf8').trim()
    t.equal(Buffer.from(key, 'base64').length, 32, '256 random bits')
    t.equal(fs.statSync(`${dir}/secrets/psk-gw-iot`).mode & 0o777, 0o600)
    t.match(
      secrets,
      new RegExp(
        `ike-gw-iot \\{\\n\\s*id-local = gw-iot\\.lab\\n\\s*id-remote = gw-cloud\\.lab\\n\\s*secret = 0s${key.replace(/[+/]/g, '\\$&')}\\n`,
      ),
    )
    const hub = renderFile('gateway/secrets.conf', swanctlVars(ctxFor(raw, 'gw-cloud', 'libipsec', dir), true))
    t.match(
      hub,
      new RegExp(
        `ike-gw-iot \\{\\n\\s*id-local = gw-cloud\\.lab\\n\\s*id-remote = gw-iot\\.lab\\n\\s*secret = 0s${key.replace(/[+/]/g, '\\$&')}\\n`,
      ),
      'the hub holds the same key for that tunnel',
    )
    t.match(hub, /ike-gw-iot2 \{/, 'and one for each site')
  },
)

t.test('gateway firewall: the internet side admits IKE and ESP from the peers only', async (t) => {
  const hub = gateway.input!(ctxFor(twoSites(), 'gw-cloud'))
  t.same(hub, [
    'iifname "inet" ip saddr { 198.51.100.11, 198.51.100.13 } udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"',
    'iifname "inet" ip saddr { 198.51.100.11, 198.51.100.13 } meta l4proto esp accept comment "ESP"',
    'iifname "inet" counter drop comment "internet side: nothing else"',
  ])
  const site = gateway.input!(ctxFor(twoSites(), 'gw-iot2'))
  t.match(site[0], /ip saddr \{ 198\.51\.100\.12 \}/, 'a site admits only the hub')
})

t.test("gateway forwarding: only between the sites' subnets, only through the tunnel", async (t) => {
  t.same(gateway.forward!(ctxFor(twoSites(), 'gw-iot', 'libipsec')), [
    'iifname "ipsec0" ip saddr { 10.20.0.0/24 } ip daddr { 10.10.1.0/24 } accept comment "gw-iot: from the tunnel"',
    'oifname "ipsec0" ip saddr { 10.10.1.0/24 } ip daddr { 10.20.0.0/24 } accept comment "gw-iot: into the tunnel"',
  ])
  const kernel = gateway.forward!(ctxFor(twoSites(), 'gw-iot', 'kernel'))
  t.match(
    kernel[0],
    /^meta secpath exists ip saddr \{ 10\.20\.0\.0\/24 \}/,
    'kernel ESP: decrypted packets carry a secpath',
  )
  t.match(kernel[1], /^rt ipsec exists ip saddr \{ 10\.10\.1\.0\/24 \}/, 'kernel ESP: only what a policy will encrypt')
})

t.test("the old server address is DNATed by its LAN's gateway, and only there", async (t) => {
  t.same(gateway.nat!(ctxFor(twoSites(), 'gw-iot')), [
    'iifname "iot" ip daddr 10.10.1.100 tcp dport { 80 } dnat ip to 10.20.0.10 comment "old server: now proxy, through the tunnel"',
  ])
  t.same(gateway.nat!(ctxFor(twoSites(), 'gw-iot2')), [], 'a site without one has no DNAT')
})

t.test('a wrong VPN section is refused with the field named', async (t) => {
  const cases: [string, (r: any) => void, RegExp][] = [
    [
      'hub that is not a gateway',
      (r) => {
        r.vpn.hub = 'proxy'
      },
      /^vpn\.hub: host proxy has role proxy, not gateway/,
    ],
    [
      'unknown hub',
      (r) => {
        r.vpn.hub = 'nope'
      },
      /^vpn\.hub: must name the cloud's gateway host/,
    ],
    [
      'unknown auth',
      (r) => {
        r.vpn.auth = 'password'
      },
      /^vpn\.auth: must be one of pubkey, psk/,
    ],
    [
      "site not on the hub's wan",
      (r) => {
        r.networks.inet2 = { kind: 'wan', cidr: '203.0.113.0/24' }
        r.hosts['gw-iot2'].interfaces = { mgmt: '172.31.250.13', iot2: '10.10.2.1', inet2: '203.0.113.13' }
      },
      /^hosts\.gw-iot2\.interfaces: gateway gw-iot2 shares no wan network with the hub gw-cloud/,
    ],
    [
      'old server outside its LAN',
      (r) => {
        r.networks.iot.old_server.address = '10.10.9.100'
      },
      /^networks\.iot\.old_server\.address: 10\.10\.9\.100 is outside network iot/,
    ],
    [
      'old server address taken',
      (r) => {
        r.networks.iot.old_server.address = '10.10.1.1'
      },
      /^networks\.iot\.old_server\.address: duplicate address 10\.10\.1\.1/,
    ],
    [
      'old server host not behind the hub',
      (r) => {
        r.networks.iot.old_server.host = 'gw-iot2'
      },
      /^networks\.iot\.old_server\.host: must name a host or group on the hub's LAN/,
    ],
    [
      'bad port',
      (r) => {
        r.networks.iot.old_server.ports = [0]
      },
      /^networks\.iot\.old_server\.ports: must be a list of TCP ports/,
    ],
  ]
  for (const [what, mutate, expected] of cases) {
    const raw: any = twoSites()
    mutate(raw)
    try {
      planOf(raw)
      t.fail(`${what}: accepted`)
    } catch (e) {
      const problems = (e as TopologyError).problems ?? [String(e)]
      t.ok(
        problems.some((p) => expected.test(p)),
        `${what}: ${problems.join(' | ')}`,
      )
    }
  }
})

t.test('the data path is the probed one, unless LAB_IPSEC_MODE forces userspace ESP', async (t) => {
  t.equal(ipsecModeFor('kernel', 'gw', {}), 'kernel')
  t.equal(ipsecModeFor('libipsec', 'gw', { LAB_IPSEC_MODE: 'auto' }), 'libipsec')
  t.equal(
    ipsecModeFor('kernel', 'gw', { LAB_IPSEC_MODE: 'libipsec' }),
    'libipsec',
    'userspace ESP where the kernel could (the benchmark compares both)',
  )
  t.throws(
    () => ipsecModeFor('libipsec', 'gw-iot', { LAB_IPSEC_MODE: 'kernel' }),
    /LAB_IPSEC_MODE=kernel, but gw-iot's kernel has no rfc7539esp/,
  )
  t.throws(
    () => ipsecModeFor('kernel', 'gw', { LAB_IPSEC_MODE: 'xfrm' }),
    /LAB_IPSEC_MODE=xfrm is not known: use auto, kernel or libipsec/,
  )
})
