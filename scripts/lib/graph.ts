// npm run lab:graph: the topology as a diagram (SVG): the lab's networks as lines with
// their CIDRs, each host as a box with its role and addresses joined to the networks it
// is on, the tunnels between gateways; coloured by live state when the lab runs (the
// monitor's view, else Vagrant's), from topology.yaml alone when it does not.
import type { Plan } from '../../provision/plan.js'

export type State = 'up' | 'down' | 'unknown'
export interface Live {
  source: string
  hosts: Map<string, State>
  tunnels: Map<string, State>
}

const COLORS: Record<State, string> = { up: '#c8e6c9', down: '#ffcdd2', unknown: '#eeeeee' }
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** Pure: the SVG text (unit-tested). */
export function graphSvg(t: Plan, live?: Live): string {
  const nets = t.networks.filter((n) => n.kind !== 'management')
  const W = 260,
    H = 74,
    GAP = 40,
    ROW = 190,
    LEFT = 40,
    TOP = 70
  const netY = new Map(nets.map((n, i) => [n.name, TOP + 40 + i * ROW]))
  // Hosts on one network sit under its line; hosts on two (gateways) between them.
  const placed: { name: string; x: number; y: number }[] = []
  const column = new Map<string, number>()
  const hostNets = (h: Plan['hosts'][number]) => h.interfaces.map((i) => i.network).filter((n) => netY.has(n))
  for (const h of t.hosts) {
    const ns = hostNets(h)
    if (ns.length === 0) continue
    const ys = ns.map((n) => netY.get(n)!)
    const key = ns.length > 1 ? ns.join('+') : ns[0]
    const i = column.get(key) ?? 0
    column.set(key, i + 1)
    const y = ns.length > 1 ? (Math.min(...ys) + Math.max(...ys)) / 2 - H / 2 : ys[0] + 30
    const x = LEFT + (ns.length > 1 ? 40 : 340) + i * (W + GAP)
    placed.push({ name: h.name, x, y })
  }
  const width = Math.max(900, ...placed.map((p) => p.x + W + LEFT))
  const height = TOP + nets.length * ROW + 40
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${LEFT}" y="28" font-size="18" font-weight="bold">${esc(t.name)}</text>`,
    `<text x="${LEFT}" y="48" fill="#555">${esc(live ? `live state from ${live.source}, ${new Date().toISOString().slice(0, 19)}Z` : 'from topology.yaml (the lab is not running)')}; management network ${esc(t.networks.find((n) => n.kind === 'management')?.cidr ?? '')} not drawn</text>`,
  ]
  for (const n of nets) {
    const y = netY.get(n.name)!
    out.push(
      `<g class="network" data-network="${esc(n.name)}"><line x1="${LEFT}" y1="${y}" x2="${width - LEFT}" y2="${y}" stroke="${n.kind === 'wan' ? '#e65100' : '#1565c0'}" stroke-width="4"/>`,
      `<text x="${LEFT}" y="${y - 8}" font-weight="bold">${esc(n.name)} ${esc(n.cidr)} (${n.kind === 'wan' ? 'simulated internet' : n.kind})</text></g>`,
    )
  }
  for (const p of placed) {
    const h = t.hosts.find((x) => x.name === p.name)!
    const state: State = live?.hosts.get(h.name) ?? 'unknown'
    for (const i of h.interfaces) {
      const y = netY.get(i.network)
      if (y === undefined) continue
      const fromY = y < p.y ? p.y : p.y + H
      out.push(`<line x1="${p.x + W / 2}" y1="${fromY}" x2="${p.x + W / 2}" y2="${y}" stroke="#777"/>`)
    }
    const addrs = h.interfaces
      .filter((i) => netY.has(i.network))
      .map((i) => `${i.network} ${i.address}`)
      .join(', ')
    out.push(
      `<g class="host" data-host="${esc(h.name)}" data-state="${state}">`,
      `<rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="8" fill="${COLORS[state]}" stroke="#333"/>`,
      `<text x="${p.x + 10}" y="${p.y + 20}" font-weight="bold">${esc(h.name)}</text>`,
      `<text x="${p.x + W - 10}" y="${p.y + 20}" text-anchor="end" fill="#555">${esc(h.role)}${live ? ` · ${state}` : ''}</text>`,
      `<text x="${p.x + 10}" y="${p.y + 40}">${esc(addrs)}</text>`,
      `<text x="${p.x + 10}" y="${p.y + 58}" fill="#555">mgmt ${esc(h.mgmt.address)}</text></g>`,
    )
  }
  for (const tun of t.vpn?.tunnels ?? []) {
    const a = placed.find((p) => p.name === tun.site)
    // A hub pair: the tunnel is drawn to each member (whichever is active carries it).
    const ends = tun.hubMembers.map((m) => placed.find((p) => p.name === m)).filter((p) => p !== undefined)
    if (!a || ends.length === 0) continue
    const state: State = live?.tunnels.get(tun.name) ?? 'unknown'
    const color = state === 'up' ? '#2e7d32' : state === 'down' ? '#c62828' : '#777'
    const [x1, y1] = [a.x + W, a.y + H / 2]
    const paths = ends.map((b) => {
      const [x2, y2] = [b.x + W, b.y + H / 2]
      const bend = Math.max(x1, x2) + 120
      return { x2, y2, bend }
    })
    const { y2, bend } = paths[0]
    out.push(
      `<g class="tunnel" data-tunnel="${esc(tun.name)}" data-state="${state}">`,
      ...paths.map(
        (p) =>
          `<path d="M ${x1} ${y1} C ${p.bend} ${y1}, ${p.bend} ${p.y2}, ${p.x2} ${p.y2}" fill="none" stroke="${color}" stroke-width="3" stroke-dasharray="8 5"/>`,
      ),
      `<text x="${bend + 8}" y="${(y1 + y2) / 2 + 18}" fill="${color}">IPsec ${esc(tun.name)} (IKEv2${ends.length > 1 ? `, to the ${esc(tun.hub)} pair` : ''})${live ? `: ${state}` : ''}</text></g>`,
    )
  }
  out.push('</svg>')
  return out.join('\n') + '\n'
}
