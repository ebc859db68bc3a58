// The site-to-site tunnel as a user relies on it: up on both gateways with exactly the
// pinned algorithms, shown by swanctl and by `ipsec statusall`, on the data path the
// kernel allows; the IoT site's traffic crosses it and nothing crosses the simulated
// internet in the clear; the old server address still works; with strongSwan stopped
// there is no path at all.
import fs from 'node:fs'
import t from 'tap'
import { ESP_PROBE } from '../../provision/facts.js'
import { pkiPaths } from '../../provision/pki.js'
import { stateDir } from '../../provision/paths.js'
import { capture, captureWire, listSas, waitForNoEstablished, waitForTunnel } from '../lib/ipsec.js'
import { openLab, waitFor } from '../lib/lab.js'

const lab = await openLab(t)
if (lab) {
  const vpn = lab.plan.vpn!
  const [tunnel] = vpn.tunnels
  const [client] = lab.byRole('iot-client')
  const proxies = lab.byRole('proxy')
  const iotNet = lab.plan.networks.find((n) => n.gateway === tunnel.site && n.oldServer)!
  const port = iotNet.oldServer!.ports[0]
  // The proxy service's address: a pair's virtual one, which its active member holds.
  const proxyAddr = lab.plan.services.proxy!.address
  // The simulated internet between the gateways, watched from this machine's bridge.
  const wan = lab.plan.networks.find((n) => n.kind === 'wan')!.name
  const marker = () => `MARKER-${Math.random().toString(36).slice(2)}-${Date.now()}`
  // A real HTTP request to nginx, the marker in its query string (unsigned: the backend
  // refuses it, which does not matter here); nginx's access log says who sent it.
  const send = (to: string, secret: string) =>
    lab.sh(
      client.name,
      `curl -s -o /dev/null -m 5 -X POST -H 'content-type: application/json' --data-binary '{}' 'http://${to}:${port}/readings?${secret}'`,
    )
  /** The access log line of the request with this marker, on whichever proxy received it. */
  const received = async (secret: string) => {
    for (const p of proxies) {
      const line = (await lab.sh(p.name, `grep -F -- ${secret} /var/log/nginx/access.log`)).stdout.trim()
      if (line) return { data: line, from: line.split(' ')[0], host: p.name }
    }
    return { data: '', from: '', host: '(none)' }
  }

  t.before(async () => {
    await waitForTunnel(lab, tunnel)
  })

  for (const gw of [tunnel.site, tunnel.hub]) {
    t.test(`${gw}: the SA is established with exactly the pinned algorithms`, async (t) => {
      const sas = await listSas(lab, gw, tunnel.name)
      t.equal(sas.length, 1, 'exactly one IKE SA for the tunnel')
      const ike = sas[0]
      t.match(ike.fields, {
        state: 'ESTABLISHED',
        version: '2',
        'encr-alg': 'CHACHA20_POLY1305',
        'prf-alg': 'PRF_HMAC_SHA2_512',
        'dh-group': 'CURVE_25519',
      })
      t.notOk(ike.fields['integ-alg'], 'AEAD: no separate integrity algorithm')
      const ids =
        gw === tunnel.site
          ? [`${tunnel.site}.${lab.plan.name}`, `${tunnel.hub}.${lab.plan.name}`]
          : [`${tunnel.hub}.${lab.plan.name}`, `${tunnel.site}.${lab.plan.name}`]
      t.match(ike.fields, { 'local-id': ids[0], 'remote-id': ids[1] }, 'the identities of the certificates')
      t.equal(ike.children.length, 1, 'one child SA')
      const child = ike.children[0]
      t.match(child.fields, { state: 'INSTALLED', mode: 'TUNNEL', protocol: 'ESP', 'encr-alg': 'CHACHA20_POLY1305' })
      const [local, remote] =
        gw === tunnel.site ? [tunnel.siteSubnets, tunnel.hubSubnets] : [tunnel.hubSubnets, tunnel.siteSubnets]
      t.equal(child.fields['local-ts'], `[${local.join(' ')}]`)
      t.equal(child.fields['remote-ts'], `[${remote.join(' ')}]`)
    })

    t.test(`${gw}: ipsec statusall shows the tunnel ESTABLISHED and INSTALLED`, async (t) => {
      const out = (await lab.sh(gw, 'ipsec statusall')).stdout
      t.match(out, new RegExp(`${tunnel.name}\\[\\d+\\]: ESTABLISHED`))
      t.match(out, /IKE proposal: CHACHA20_POLY1305\/PRF_HMAC_SHA2_512\/CURVE_25519/)
      t.match(out, new RegExp(`${tunnel.name}\\{\\d+\\}:  INSTALLED, TUNNEL`))
    })

    t.test(`${gw}: the data path is the one the kernel allows, and the SA uses it`, async (t) => {
      const probed = (await lab.sh(gw, ESP_PROBE)).stdout.trim()
      t.equal(
        (await lab.sh(gw, 'cat /etc/lab/ipsec-mode')).stdout.trim(),
        probed,
        `recorded mode is what a fresh probe finds (${probed})`,
      )
      const child = (await listSas(lab, gw, tunnel.name))[0].children[0]
      if (probed === 'libipsec') {
        t.equal(child.fields.encap, 'yes', 'userspace ESP is always ESP in UDP')
        t.equal((await lab.sh(gw, 'ip -br link show ipsec0')).code, 0, 'charon runs the ipsec0 TUN device')
        t.match(
          (await lab.sh(gw, 'ip route show table 220')).stdout,
          new RegExp(
            `${(gw === tunnel.site ? tunnel.hubSubnets : tunnel.siteSubnets)[0].replace(/\./g, '\\.')} dev ipsec0`,
          ),
        )
      } else {
        const xfrm = (await lab.sh(gw, 'ip xfrm state')).stdout
        t.match(xfrm, /rfc7539esp\(chacha20,poly1305\)/, 'the kernel holds the ESP state (XFRM)')
        t.notMatch(xfrm, /encap type espinudp/, 'with no UDP encapsulation')
        t.notOk(child.fields.encap, 'the SA is plain ESP, not ESP in UDP')
        t.match(
          (await lab.sh(gw, 'ipsec statusall')).stdout,
          new RegExp(`${tunnel.name}\\{\\d+\\}:  INSTALLED, TUNNEL, reqid`),
          'ipsec statusall: TUNNEL, not TUNNEL-in-UDP',
        )
      }
    })
  }

  t.test('the CA key stays on the provisioning machine; each gateway key is its own, 0600', async (t) => {
    const caKey = fs.readFileSync(pkiPaths(stateDir).caKey, 'utf8').split('\n')[1]
    t.ok(caKey && caKey.length > 20, 'the CA key exists here (control)')
    for (const gw of [tunnel.site, ...lab.membersOf(tunnel.hub)]) {
      const found = await lab.sh(gw, `grep -rlF -- ${JSON.stringify(caKey)} /etc /root /home /var/lib /tmp 2>/dev/null`)
      t.equal(found.stdout.trim(), '', `${gw} holds no copy of the CA key`)
      t.equal(
        (await lab.sh(gw, `stat -c '%a %U' /etc/swanctl/private/${gw}.key`)).stdout.trim(),
        '600 root',
        `${gw}'s own key is 0600 root`,
      )
    }
    t.equal(fs.statSync(pkiPaths(stateDir).caKey).mode & 0o777, 0o600, 'the CA key is 0600 here')
  })

  t.test('traffic from the IoT LAN to the proxy crosses the tunnel, and only sealed', async (t) => {
    const before = Number((await listSas(lab, tunnel.hub, tunnel.name))[0].children[0].fields['bytes-in'])
    const lanAddresses = [...tunnel.siteSubnets, ...tunnel.hubSubnets].map(
      (c) => c.split('.').slice(0, 3).join('.') + '.',
    )
    const showsLan = (l: string) => lanAddresses.some((a) => l.includes(` ${a}`))
    const secret = marker()
    const wire = await captureWire(lab, wan, async () => {
      const inside = await capture(lab, await lab.member(tunnel.hub), 'cloud', async () => {
        await send(proxyAddr, secret)
      })
      t.match(
        inside.ascii,
        secret,
        `control: on the cloud LAN, after the tunnel, the marker is in clear (${inside.lines.length} packets: ${inside.lines.slice(0, 3).join(' | ')})`,
      )
      t.ok(inside.lines.some(showsLan), 'control: there, the packets show LAN addresses')
    })
    const got = await received(secret)
    t.match(got.data, secret, 'the proxy received the request')
    t.equal(got.from, client.addresses.iot, "from the device's own address: no NAT on the way")
    const after = Number((await listSas(lab, tunnel.hub, tunnel.name))[0].children[0].fields['bytes-in'])
    t.ok(after > before, `the child SA's inbound byte counter grew (${before} → ${after})`)
    t.ok(wire.lines.length > 0, `packets were seen on the simulated internet (${wire.lines.length})`)
    // kernel-libipsec always encapsulates ESP in UDP 4500, so a tunnel with it at either
    // end is ESP in UDP; between two kernels it is ESP itself, IP protocol 50.
    const modes = await Promise.all(
      [tunnel.site, ...lab.membersOf(tunnel.hub)].map(async (g) =>
        (await lab.sh(g, 'cat /etc/lab/ipsec-mode')).stdout.trim(),
      ),
    )
    const mode = modes.includes('libipsec') ? 'libipsec' : 'kernel'
    const sealed =
      mode === 'libipsec'
        ? /UDP-encap: ESP|\.4500 > .*\.4500: (UDP-encap|NONESP|isakmp)|\.500 > .*\.500: isakmp/
        : /^\S+ IP [\d.]+ > [\d.]+: ESP\(spi=|\.500 > .*\.500: isakmp/
    // Also tolerated: ARP (how the gateways find each other; not IP) and ICMP errors
    // about the IKE ports between the gateways themselves (headers only, no LAN data).
    const harmless = / ARP, |ICMP .*udp port (500|4500) unreachable/
    const clear = wire.lines.filter((l) => !sealed.test(l) && !harmless.test(l))
    t.same(wire.lines.filter(showsLan), [], 'no packet on the simulated internet shows a LAN address')
    t.same(
      clear,
      [],
      `only ${mode === 'libipsec' ? 'ESP in UDP 4500 and IKE' : 'ESP (IP protocol 50) and IKE'} on the wire (and ARP)${clear.length ? `; also: ${clear.join(' | ')}` : ''}`,
    )
    if (mode === 'kernel') {
      t.ok(
        wire.lines.some((l) => /: ESP\(spi=/.test(l) && !/UDP-encap/.test(l)),
        `both gateways (${modes.join(', ')}) do ESP in the kernel: plain ESP on the wire`,
      )
      t.same(
        wire.lines.filter((l) => /UDP-encap|\.4500 > /.test(l)),
        [],
        'and no ESP in UDP',
      )
    } else {
      t.ok(
        wire.lines.some((l) => /UDP-encap: ESP/.test(l)),
        `kernel-libipsec at one end (${modes.join(', ')}): ESP in UDP 4500 on the wire`,
      )
    }
    t.notMatch(wire.ascii, secret, 'the marker never appears on the simulated internet')
  })

  t.test('devices keep their old server address: it leads to the proxy through the tunnel', async (t) => {
    const secret = marker()
    const r = await send(iotNet.oldServer!.address, secret)
    t.equal(r.code, 0, `${client.name} gets an HTTP answer from ${iotNet.oldServer!.address}:${port}`)
    const got = await received(secret)
    t.match(got.data, secret, `the request arrives at ${got.host}`)
    t.equal(got.from, client.addresses.iot, 'and the proxy sees the device itself')
  })

  t.test('with strongSwan stopped on a gateway there is no path at all, and nothing leaks', async (t) => {
    t.teardown(async () => {
      await lab.sh(tunnel.site, 'systemctl start strongswan.service')
      await waitForTunnel(lab, tunnel)
    })
    await lab.sh(tunnel.site, 'systemctl stop strongswan.service')
    // charon is gone on the site once its unit is inactive and the hub holds no SA of it.
    await waitFor(
      `strongSwan stopped on ${tunnel.site}`,
      async () => (await lab.sh(tunnel.site, 'systemctl is-active strongswan.service')).stdout.trim() !== 'active',
      30_000,
    )
    await waitForNoEstablished(lab, tunnel, 60_000)
    const secret = marker()
    const wire = await captureWire(lab, wan, async () => {
      t.not((await send(proxyAddr, secret)).code, 0, 'the device cannot reach the proxy')
      t.not((await lab.sh(client.name, `ping -c 2 -i 0.2 -W 1 ${proxyAddr}`)).code, 0, 'not even a ping')
    })
    t.notMatch(wire.ascii, secret, 'the marker is not on the simulated internet')
    t.same(
      wire.lines.filter((l) => l.includes(client.addresses.iot)),
      [],
      'no packet of the device crossed in clear',
    )
    const route = await lab.sh(tunnel.site, `ip route get ${proxyAddr}`)
    t.not(route.code, 0, `${tunnel.site} has no route to the cloud LAN without its tunnel (${route.stderr.trim()})`)
  })
}
