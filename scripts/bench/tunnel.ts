// What the tunnel costs: iperf3 TCP through it (the readings' path, iot-client to the
// proxy) and between the same gateways over the simulated internet without it (the
// link the tunnel rides on), and what one core can encrypt with the tunnel's AEAD
// (openssl speed), so the report can say what fraction of the limit the tunnel reaches.
import { hostsWithRole } from '../../provision/plan.js'
import type { BenchLab } from './lab.js'
import { figure, type Figure } from './stats.js'

const PORT = 5201

export interface TunnelFigures {
  through_tunnel_mbit: Figure
  without_tunnel_mbit: Figure
  crypto_one_core_mbit: Figure
  packet_bytes: number
  ipsec_mode: string
}

export async function iperf(
  lab: BenchLab,
  server: string,
  serverAddr: string,
  client: string,
  seconds: number,
  bind?: string,
): Promise<number> {
  await lab.must(
    server,
    `(timeout ${seconds + 15} iperf3 -s -1 -p ${PORT} -B ${serverAddr} >/dev/null 2>&1 &) ; for i in $(seq 50); do ss -Hltn 'sport = :${PORT}' | grep -q . && break; sleep 0.1; done`,
  )
  const out = await lab.must(client, `iperf3 -J -c ${serverAddr} -p ${PORT} -t ${seconds} ${bind ? `-B ${bind}` : ''}`)
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }
  return j.end.sum_received.bits_per_second / 1e6
}

export async function tunnelBench(
  lab: BenchLab,
  runs: number,
  seconds: number,
  log: (m: string) => void,
): Promise<TunnelFigures> {
  const t = lab.plan
  const tunnel = t.vpn?.tunnels[0]
  if (!tunnel) throw new Error('the topology has no VPN tunnel to measure')
  const [client] = hostsWithRole(t, 'iot-client')
  const [proxy] = hostsWithRole(t, 'proxy')
  const proxyAddr = proxy.addresses[t.networks.find((n) => n.gateway === tunnel.hub)!.name]
  const iotLans = tunnel.siteSubnets
  await lab.allow(proxy.name, `ip saddr { ${iotLans.join(', ')} } tcp dport ${PORT} accept`)
  await lab.allow(tunnel.hub, `ip saddr ${tunnel.siteAddress} tcp dport ${PORT} accept`)
  const through: number[] = []
  const direct: number[] = []
  const crypto: number[] = []
  log(`Tunnel: iperf3 ${runs} × ${seconds} s each way of measuring, and openssl speed`)
  for (let i = 0; i < runs; i++) {
    // Side by side in each round, so that a noisy moment hits both.
    through.push(await iperf(lab, proxy.name, proxyAddr, client.name, seconds))
    direct.push(await iperf(lab, tunnel.hub, tunnel.hubAddress, tunnel.site, seconds, tunnel.siteAddress))
    const speed = await lab.must(
      tunnel.hub,
      'openssl speed -mr -evp chacha20-poly1305 -seconds 1 -bytes 1400 2>/dev/null',
    )
    const m = /^\+F:\d+:[^:]+:([\d.]+)/m.exec(speed)
    crypto.push(m ? (Number(m[1]) * 8) / 1e6 : NaN)
    log(
      `  run ${i + 1}/${runs}: through the tunnel ${through[i].toFixed(0)} Mbit/s, without ${direct[i].toFixed(0)} Mbit/s, ChaCha20-Poly1305 on one core ${crypto[i].toFixed(0)} Mbit/s`,
    )
  }
  return {
    through_tunnel_mbit: figure(through),
    without_tunnel_mbit: figure(direct),
    crypto_one_core_mbit: figure(crypto),
    packet_bytes: 1400,
    ipsec_mode: (await lab.sh(tunnel.hub, 'cat /etc/lab/ipsec-mode')).stdout.trim() || 'unknown',
  }
}
