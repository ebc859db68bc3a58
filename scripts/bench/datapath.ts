// Kernel ESP against strongSwan's userspace ESP (kernel-libipsec) on the same gateways,
// and against no tunnel, side by side in each round: iperf3 through the tunnel with the
// gateways as provisioned (kernel ESP), then re-provisioned with LAB_IPSEC_MODE=libipsec,
// then put back. Only where the gateways' kernels do ESP (VMs); elsewhere there is only
// one data path and the tunnel section says it all.
import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { hostsWithRole } from '../../provision/plan.js'
import { repoRoot, topologyFile } from '../../provision/paths.js'
import type { BenchLab } from './lab.js'
import { figure, type Figure } from './stats.js'
import { iperf } from './tunnel.js'
import { waitFor } from '../../provision/lib/wait.js'

const run = promisify(execFile)

export interface DatapathFigures {
  kernel_mbit: Figure
  libipsec_mbit: Figure
  no_tunnel_mbit: Figure
  accel: string
}

async function reprovisionGateways(lab: BenchLab, mode: 'auto' | 'libipsec'): Promise<void> {
  const gateways = hostsWithRole(lab.plan, 'gateway').map((h) => h.name)
  await run(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), ['provision/cli.ts', ...gateways], {
    cwd: repoRoot,
    env: { ...process.env, LAB_TOPOLOGY: topologyFile, LAB_IPSEC_MODE: mode },
    maxBuffer: 64 << 20,
  })
}

async function waitInstalled(lab: BenchLab, gw: string, name: string): Promise<void> {
  await waitFor(
    `the tunnel ${name} to come back on ${gw}`,
    async () => (await lab.sh(gw, `swanctl --list-sas --ike ${name} 2>/dev/null | grep -q INSTALLED`)).code === 0,
    60_000,
    200,
  )
}

export async function datapathBench(
  lab: BenchLab,
  runs: number,
  seconds: number,
  accel: string,
  log: (m: string) => void,
): Promise<DatapathFigures | undefined> {
  const t = lab.plan
  const tunnel = t.vpn?.tunnels[0]
  if (!tunnel) return undefined
  const modes = await Promise.all(
    [tunnel.site, tunnel.hub].map(async (g) => (await lab.sh(g, 'cat /etc/lab/ipsec-mode')).stdout.trim()),
  )
  if (modes.some((m) => m !== 'kernel')) {
    log(`Data paths: skipped, the gateways' kernels do not both do ESP (${modes.join(', ')}): only userspace ESP here`)
    return undefined
  }
  const [client] = hostsWithRole(t, 'iot-client')
  const [proxy] = hostsWithRole(t, 'proxy')
  const proxyAddr = proxy.addresses[t.networks.find((n) => n.gateway === tunnel.hub)!.name]
  await lab.allow(proxy.name, `ip saddr { ${tunnel.siteSubnets.join(', ')} } tcp dport 5201 accept`)
  await lab.allow(tunnel.hub, `ip saddr ${tunnel.siteAddress} tcp dport 5201 accept`)
  const kernel: number[] = []
  const libipsec: number[] = []
  const none: number[] = []
  log(
    `Data paths: kernel ESP, kernel-libipsec and no tunnel on the same gateways, ${runs} rounds of ${seconds} s each (gateways re-provisioned twice a round)`,
  )
  try {
    for (let i = 0; i < runs; i++) {
      kernel.push(await iperf(lab, proxy.name, proxyAddr, client.name, seconds))
      none.push(await iperf(lab, tunnel.hub, tunnel.hubAddress, tunnel.site, seconds, tunnel.siteAddress))
      await reprovisionGateways(lab, 'libipsec')
      await waitInstalled(lab, tunnel.site, tunnel.name)
      // The hub's opening lived in its lab table, which provisioning replaced.
      await lab.allow(tunnel.hub, `ip saddr ${tunnel.siteAddress} tcp dport 5201 accept`)
      libipsec.push(await iperf(lab, proxy.name, proxyAddr, client.name, seconds))
      await reprovisionGateways(lab, 'auto')
      await waitInstalled(lab, tunnel.site, tunnel.name)
      await lab.allow(tunnel.hub, `ip saddr ${tunnel.siteAddress} tcp dport 5201 accept`)
      log(
        `  round ${i + 1}/${runs}: kernel ESP ${kernel[i].toFixed(0)} Mbit/s, kernel-libipsec ${libipsec[i].toFixed(0)} Mbit/s, no tunnel ${none[i].toFixed(0)} Mbit/s`,
      )
    }
  } finally {
    // Whatever happened, the gateways go back to the data path their kernels allow.
    if ((await lab.sh(tunnel.hub, 'cat /etc/lab/ipsec-mode')).stdout.trim() !== 'kernel')
      await reprovisionGateways(lab, 'auto')
  }
  return { kernel_mbit: figure(kernel), libipsec_mbit: figure(libipsec), no_tunnel_mbit: figure(none), accel }
}
