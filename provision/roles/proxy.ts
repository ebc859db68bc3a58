// Role proxy: nginx arrives with the telemetry issue. What is here already: the proxy
// admits the old server's ports only from the IoT sites' subnets, which reach it only
// through the tunnel (the gateways forward nothing else).
import type { Context } from '../runner.js'
import type { RoleModule } from './index.js'

/** The IoT subnets whose old server address now leads to this host, and the ports. */
export function servedOldServers(ctx: Context): { subnet: string; ports: number[] }[] {
  return ctx.topology.networks
    .filter((n) => n.oldServer?.host === ctx.self.name)
    .map((n) => ({ subnet: n.cidr, ports: n.oldServer!.ports }))
}

export const proxy: RoleModule = {
  role: { name: 'proxy', steps: [] },
  input: (ctx) => servedOldServers(ctx).map((s) =>
    `ip saddr ${s.subnet} tcp dport { ${s.ports.join(', ')} } accept comment "IoT devices, through the tunnel"`),
}
