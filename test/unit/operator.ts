// The operator's commands without a lab: which links they accept and the sentence that
// refuses a wrong one, the nftables rules and tcpdump arguments they make, and the
// diagram lab:graph draws from the topology alone or coloured by live state.
import t from 'tap'
import { tcpdumpArgs } from '../../scripts/lib/capture.js'
import { graphSvg } from '../../scripts/lib/graph.js'
import { bridgeRule, hostScript, lossMatch } from '../../scripts/lib/impair.js'
import { boundedNumber, linkName, parseLink } from '../../scripts/lib/links.js'
import { loadPlan } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'

const topo = loadPlan(topologyFile)

t.test('links: a network or host:interface; anything else refused with the argument named', async (t) => {
  t.equal(linkName(parseLink(topo, 'inet')), 'inet')
  t.equal(linkName(parseLink(topo, 'gw-iot:inet')), 'gw-iot:inet')
  const l = parseLink(topo, 'gw-iot:iot')
  t.match(l, { kind: 'interface', host: { name: 'gw-iot' }, network: { name: 'iot' } })
  t.throws(
    () => parseLink(topo, undefined),
    /name the link: a network \(mgmt, iot, inet, cloud\) or host:interface \(e\.g\. gw-iot:inet\)/,
  )
  t.throws(
    () => parseLink(topo, 'internet'),
    /link "internet": no such network; give a network \(mgmt, iot, inet, cloud\)/,
  )
  t.throws(() => parseLink(topo, 'gw-x:inet'), /link "gw-x:inet": no host "gw-x" in the topology \(iot-client, gw-iot/)
  t.throws(
    () => parseLink(topo, 'proxy-1:inet'),
    /link "proxy-1:inet": proxy-1 has no interface "inet"; its interfaces are mgmt, cloud/,
  )
  t.throws(() => parseLink(topo, 'a:b:c'), /one colon at most/)
  t.throws(() => parseLink(topo, 'mgmt'), /the management network is how the lab is reached; it is never impaired/)
  t.equal(linkName(parseLink(topo, 'mgmt', { allowManagement: true })), 'mgmt', 'a capture may look at it')
})

t.test('numbers: bounded, with the option named', async (t) => {
  t.equal(boundedNumber('12.5', 'loss', 0, 100, { decimals: 1 }), 12.5)
  t.throws(
    () => boundedNumber('12.55', 'loss', 0, 100, { decimals: 1 }),
    /--loss must be a number with at most 1 decimal from 0 to 100; got "12\.55"/,
  )
  t.throws(() => boundedNumber(101, 'loss', 0, 100, { decimals: 1 }), /--loss must be .* from 0 to 100; got 101/)
  t.throws(
    () => boundedNumber('lots', 'count', 1, 100_000, { integer: true }),
    /--count must be a whole number from 1 to 100000; got "lots"/,
  )
  t.throws(
    () => boundedNumber(0, 'seconds', 1, 600, { integer: true }),
    /--seconds must be a whole number from 1 to 600; got 0/,
  )
})

t.test('impair: loss as nftables random numbers, per bridge port or inside a host', async (t) => {
  t.equal(lossMatch(20), 'numgen random mod 1000 < 200')
  t.equal(lossMatch(0.5), 'numgen random mod 1000 < 5')
  t.equal(
    bridgeRule('inet', ['vethA', 'vethB'], 20),
    'iifname { "vethA", "vethB" } numgen random mod 1000 < 200 counter drop comment "lab:impair inet loss 20%"',
  )
  t.equal(lossMatch(100), '', 'all: no random number (nft refuses mod 1000 < 1000)')
  const script = hostScript('inet', 100)
  t.match(script, /^set -e\n/, 'a rule that fails fails the command')
  t.match(script, /hook prerouting priority -300/)
  t.match(script, /in iifname '"inet"' counter drop/)
  t.match(script, /out oifname '"inet"' counter drop/)
  t.match(hostScript('inet', 25), /in iifname '"inet"' numgen random mod 1000 < 250 counter drop/)
  t.notMatch(script, /netem/, 'no delay asked: no netem')
  t.match(hostScript('inet', 0, 50), /tc qdisc add dev inet root netem delay 50ms \|\| \{ echo "NO_NETEM"; exit 3; \}/)
})

t.test('capture: tcpdump bounded by count, printed line by line or written whole', async (t) => {
  t.same(tcpdumpArgs('iotlab-inet', { count: 5, seconds: 3, filter: 'esp' }), [
    '-i',
    'iotlab-inet',
    '-nn',
    '--immediate-mode',
    '-c',
    '5',
    '-l',
    'esp',
  ])
  t.same(tcpdumpArgs('inet', { count: 100, seconds: 3, write: '/tmp/x.pcap' }), [
    '-i',
    'inet',
    '-nn',
    '--immediate-mode',
    '-c',
    '100',
    '-U',
    '-s',
    '0',
    '-w',
    '/tmp/x.pcap',
  ])
})

t.test('graph: every network, host, address and tunnel from the topology alone; live state colours it', async (t) => {
  const svg = graphSvg(topo)
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  t.match(svg, /from topology\.yaml \(the lab is not running\)/)
  for (const n of topo.networks.filter((x) => x.kind !== 'management')) t.match(svg, `${n.name} ${n.cidr}`)
  for (const h of topo.hosts) {
    t.match(svg, `data-host="${h.name}" data-state="unknown"`)
    for (const i of h.interfaces.slice(1)) t.match(svg, `${i.network} ${i.address}`)
  }
  t.match(svg, /data-tunnel="gw-iot" data-state="unknown"[\s\S]*IPsec gw-iot \(IKEv2/)
  const live = graphSvg(topo, {
    source: 'the monitor',
    hosts: new Map([
      ['backend-2', 'down'],
      ['proxy-1', 'up'],
    ]),
    tunnels: new Map([['gw-iot', 'up']]),
  })
  t.match(live, /live state from the monitor/)
  t.match(live, /data-host="backend-2" data-state="down">\n<rect [^>]*fill="#ffcdd2"/)
  t.match(live, /data-host="proxy-1" data-state="up">\n<rect [^>]*fill="#c8e6c9"/)
  t.match(live, /data-tunnel="gw-iot" data-state="up">\n<path [^>]*stroke="#2e7d32"/)
})
