// What the monitor scrapes, derived from the topology in one place: every host's node
// exporter, each role's own exporter or /metrics, on the host's LAN address (a site's
// hosts are reached through the tunnel, as a central monitoring would reach them).
// The monitor's scrape configuration, each host's firewall and `lab:status` read it.
import { hostsWithRole, type Host, type Topology } from '../topology.js'

// ingest: the ingest server's own plain listener for /metrics and /healthz; its readings
// port speaks mutual TLS with the proxy alone, and counters carry no reading.
export const MONITOR_PORTS = {
  prometheus: 9090,
  node: 9100,
  client: 9101,
  ingest: 9102,
  nginx: 9113,
  postgres: 9187,
} as const
/** Seconds between scrapes, and between rule evaluations: short, for a lab whose faults last seconds. */
export const SCRAPE_INTERVAL_S = 5
/** Where node exporter's textfile collector reads (Debian's default): the gateways' IPsec metrics go there. */
export const TEXTFILE_DIR = '/var/lib/prometheus/node-exporter'

export interface Target {
  job: string
  host: string
  role: string
  address: string
  port: number
}

export const monitorOf = (t: Topology): Host | undefined => hostsWithRole(t, 'monitor')[0]

/** A host's address on its first LAN: what the monitor scrapes (the management network never carries it). */
export function lanAddress(t: Topology, h: Host): string | undefined {
  const lans = new Set(t.networks.filter((n) => n.kind === 'lan').map((n) => n.name))
  return h.interfaces.find((i) => lans.has(i.network))?.address
}

export const monitorAddress = (t: Topology) => {
  const m = monitorOf(t)
  return m && lanAddress(t, m)
}

/** Where the provisioning machine reaches Prometheus: the monitor's management address. */
export const prometheusUrl = (t: Topology): string | undefined => {
  const m = monitorOf(t)
  return m && `http://${m.mgmt.address}:${MONITOR_PORTS.prometheus}`
}

/** Every scrape target, in the topology's host order. */
export function scrapeTargets(t: Topology): Target[] {
  if (!monitorOf(t)) return []
  const out: Target[] = []
  for (const h of t.hosts) {
    const address = lanAddress(t, h)
    if (!address) continue
    const add = (job: string, port: number) => out.push({ job, host: h.name, role: h.role, address, port })
    add('node', MONITOR_PORTS.node)
    if (h.role === 'backend') add('ingest', MONITOR_PORTS.ingest)
    if (h.role === 'proxy') add('nginx', MONITOR_PORTS.nginx)
    if (h.role === 'db') add('postgres', MONITOR_PORTS.postgres)
    if (h.role === 'iot-client') add('client', MONITOR_PORTS.client)
    if (h.role === 'monitor') add('prometheus', MONITOR_PORTS.prometheus)
  }
  return out
}

/** The firewall rule that admits the monitor to exactly the ports it scrapes on this host. */
export function monitorInput(t: Topology, self: Host): string[] {
  const from = monitorAddress(t)
  const ports = scrapeTargets(t)
    .filter((x) => x.host === self.name && self.role !== 'monitor')
    .map((x) => x.port)
  return from && ports.length
    ? [
        `ip saddr ${from} tcp dport { ${ports.join(', ')} } accept comment "Prometheus on ${monitorOf(t)!.name}: what it scrapes here"`,
      ]
    : []
}
