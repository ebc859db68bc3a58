// The firewall rule that admits the monitor to what it scrapes on a host, and the
// monitor's fixed settings. What it scrapes, on which address, is the plan's
// (plan.ts: services.scrapeTargets, on each host's LAN address: a site's hosts are
// reached through the tunnel, as a central monitoring would reach them).
import type { Host, Plan } from '../plan.js'

/** Seconds between scrapes, and between rule evaluations: short, for a lab whose faults last seconds. */
export const SCRAPE_INTERVAL_S = 5
/** Where node exporter's textfile collector reads (Debian's default): the gateways' IPsec metrics go there. */
export const TEXTFILE_DIR = '/var/lib/prometheus/node-exporter'

/** The firewall rule that admits the monitor to exactly the ports it scrapes on this host. */
export function monitorInput(p: Plan, self: Host): string[] {
  const monitor = p.services.monitor
  const ports = p.services.scrapeTargets
    .filter((x) => x.host === self.name && self.role !== 'monitor')
    .map((x) => x.port)
  return monitor && ports.length
    ? [
        `ip saddr ${monitor.address} tcp dport { ${ports.join(', ')} } accept comment "Prometheus on ${monitor.host}: what it scrapes here"`,
      ]
    : []
}
