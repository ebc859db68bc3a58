// What `npm run lab:status` shows of the running lab beyond its hosts: the monitor's
// view, from Prometheus's HTTP API on the management network. Readings per second over
// the last minute, the backlog and its oldest reading, each backend's share, the
// tunnels' throughput, and the alerts firing. Says so plainly when there is no monitor.
import type { Plan } from '../../provision/plan.js'

export interface Watch {
  url: string
  readingsPerS: number
  pending: number
  oldestS: number
  share: Record<string, number>
  tunnelBitsPerS: Record<string, { in: number; out: number }>
  alerts: { name: string; host: string; severity: string }[]
  down: string[]
  /** Each topology group's members and the VRRP state each last reported (absent: not reporting). */
  pairs: { group: string; role?: string; members: { host: string; state?: string }[] }[]
  /**
   * A database cluster's members as Patroni last reported them (absent: not reporting),
   * with how far each replica replays behind the primary (bytes).
   */
  dbCluster?: { group: string; members: { host: string; role?: DbRole; lagBytes?: number }[] }
}

export type DbRole = 'primary' | 'sync standby' | 'replica' | 'stopped'

export type Sample = { metric: Record<string, string>; value: [number, string] }

/** One instant query to Prometheus's HTTP API; an error names the expression. */
export async function query(url: string, expr: string, timeoutMs = 3000): Promise<Sample[]> {
  const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`, {
    signal: AbortSignal.timeout(timeoutMs),
  })
  const body = (await res.json()) as { status: string; error?: string; data: { result: Sample[] } }
  if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`)
  return body.data.result
}

export async function watch(plan: Plan): Promise<Watch | string> {
  const url = plan.services.monitor?.url
  if (!url) return 'Monitor: the topology has no host with role monitor.'
  const num = (s: Sample[]) => Number(s[0]?.value[1] ?? 0)
  const by = (label: string) => (s: Sample[]) => Object.fromEntries(s.map((x) => [x.metric[label], Number(x.value[1])]))
  const byHost = by('host')
  try {
    const [rate, pending, oldest, share, tin, tout, alerts, down, vrrp, patroni] = await Promise.all([
      query(url, 'sum(rate(ingest_readings_accepted_total[1m]))'),
      query(url, 'sum(lab_client_readings_pending)'),
      query(url, 'max(lab_client_oldest_pending_age_seconds)'),
      query(url, 'sum by (host) (rate(ingest_readings_accepted_total[1m]))'),
      // By tunnel end (side): a hub pair's traffic is the hub's, whichever member carries it.
      query(url, 'sum by (side) (rate(lab_ipsec_child_bytes_in_total[1m])) * 8'),
      query(url, 'sum by (side) (rate(lab_ipsec_child_bytes_out_total[1m])) * 8'),
      query(url, 'ALERTS{alertstate="firing"}'),
      query(url, 'up == 0'),
      query(url, 'lab_vrrp_state == 1'),
      query(
        url,
        '{__name__=~"patroni_(primary|sync_standby|replica|postgres_running|xlog_location|xlog_replayed_location)"}',
      ),
    ])
    const ins = by('side')(tin)
    const outs = by('side')(tout)
    return {
      url,
      readingsPerS: num(rate),
      pending: num(pending),
      oldestS: num(oldest),
      share: byHost(share),
      tunnelBitsPerS: Object.fromEntries(
        [...new Set([...Object.keys(ins), ...Object.keys(outs)])]
          .sort()
          .map((h) => [h, { in: ins[h] ?? 0, out: outs[h] ?? 0 }]),
      ),
      alerts: alerts
        .map((a) => ({ name: a.metric.alertname, host: a.metric.host ?? '', severity: a.metric.severity ?? '' }))
        .sort((a, b) => a.name.localeCompare(b.name) || a.host.localeCompare(b.host)),
      down: down.map((d) => `${d.metric.job} on ${d.metric.host}`).sort(),
      ...dbClusterOf(plan, patroni),
      pairs: plan.vrrp.map((g) => ({
        group: g.name,
        role: g.role,
        members: g.members.map((m) => ({
          host: m.host,
          state: vrrp.find((x) => x.metric.group === g.name && x.metric.host === m.host)?.metric.state,
        })),
      })),
    }
  } catch (e) {
    return `Monitor: Prometheus does not answer at ${url} (${(e as Error).message}); is the lab up and provisioned? npm run lab`
  }
}

/** The database cluster's members from Patroni's metrics (none when the plan has no cluster). */
function dbClusterOf(plan: Plan, patroni: Sample[]): Pick<Watch, 'dbCluster'> {
  const group = plan.vrrp.find((g) => g.role === 'db')
  if (!group || !plan.services.db?.cluster) return {}
  const v = (host: string, name: string) => {
    const x = patroni.find((p) => p.metric.host === host && p.metric.__name__ === `patroni_${name}`)
    return x ? Number(x.value[1]) : undefined
  }
  const primary = group.members.find((m) => v(m.host, 'primary') === 1)
  const head = primary ? v(primary.host, 'xlog_location') : undefined
  return {
    dbCluster: {
      group: group.name,
      members: group.members.map(({ host }) => {
        if (v(host, 'postgres_running') === undefined) return { host }
        const role: DbRole =
          v(host, 'postgres_running') !== 1
            ? 'stopped'
            : v(host, 'primary') === 1
              ? 'primary'
              : v(host, 'sync_standby') === 1
                ? 'sync standby'
                : 'replica'
        const replayed = v(host, 'xlog_replayed_location')
        return role === 'sync standby' || role === 'replica'
          ? {
              host,
              role,
              ...(head !== undefined && replayed !== undefined ? { lagBytes: Math.max(0, head - replayed) } : {}),
            }
          : { host, role }
      }),
    },
  }
}

const bytes = (b: number) =>
  b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} B`

const bits = (b: number) =>
  b >= 1e6 ? `${(b / 1e6).toFixed(1)} Mbit/s` : b >= 1e3 ? `${(b / 1e3).toFixed(1)} kbit/s` : `${Math.round(b)} bit/s`

/** What a member's VRRP state means to a person reading lab:status. */
const VRRP_WORDS: Record<string, string> = {
  master: 'active',
  backup: 'standby',
  fault: 'failing its health check',
  stop: 'keepalived stopped',
}

/** A database cluster's keepalived follows Patroni's primary: its replicas fail the check by design. */
const DB_VRRP_WORDS: Record<string, string> = { ...VRRP_WORDS, master: 'holds the address', fault: 'not the primary' }

/** The lines lab:status prints (pure: unit-tested). */
export function watchText(w: Watch | string): string {
  if (typeof w === 'string') return `\n${w}`
  const total = Object.values(w.share).reduce((a, b) => a + b, 0)
  const share = Object.entries(w.share)
    .sort()
    .map(([h, r]) => `${h} ${total > 0 ? Math.round((r / total) * 100) : 0} %`)
    .join(', ')
  return [
    '',
    `Monitor (${w.url}, console: ${w.url}/consoles/lab.html)`,
    `  readings stored   ${w.readingsPerS.toFixed(1)}/s over the last minute${share ? ` (${share})` : ''}`,
    `  backlog           ${Math.round(w.pending)} readings waiting${w.pending > 0 ? `, the oldest ${Math.round(w.oldestS)} s old` : ''}`,
    `  tunnels           ${
      Object.entries(w.tunnelBitsPerS)
        .map(([h, t]) => `${h} in ${bits(t.in)}, out ${bits(t.out)}`)
        .join('; ') || 'no traffic counted'
    }`,
    ...(w.dbCluster
      ? [
          `  cluster ${w.dbCluster.group.padEnd(9)} ${w.dbCluster.members
            .map(
              (m) =>
                `${m.host} ${m.role ?? 'not reporting'}${m.lagBytes !== undefined ? ` (${bytes(m.lagBytes)} behind)` : ''}`,
            )
            .join(', ')}`,
        ]
      : []),
    ...w.pairs.map(
      (p) =>
        `  pair ${p.group.padEnd(12)} ${p.members.map((m) => `${m.host} ${(p.role === 'db' ? DB_VRRP_WORDS : VRRP_WORDS)[m.state ?? ''] ?? m.state ?? 'not reporting'}`).join(', ')}`,
    ),
    `  targets down      ${w.down.length ? w.down.join(', ') : 'none'}`,
    `  alerts firing     ${w.alerts.length ? w.alerts.map((a) => `${a.name}${a.host ? ` (${a.host})` : ''}`).join(', ') : 'none'}`,
  ].join('\n')
}

/** Live state for lab:graph: the monitor's view when it answers, else Vagrant's; undefined when nothing runs. */
export async function liveState(
  plan: Plan,
  states: Map<string, string>,
): Promise<import('./graph.js').Live | undefined> {
  if (![...states.values()].some((s) => s === 'running')) return undefined
  const url = plan.services.monitor?.url
  if (url) {
    try {
      const [up, tunnels] = await Promise.all([
        query(url, 'up{job="node"}'),
        query(url, 'min by (conn) (max by (side, conn) (lab_ipsec_child_sa_up))'),
      ])
      const hosts = new Map(
        plan.hosts.map((h) => {
          const s = up.find((x) => x.metric.host === h.name)
          return [
            h.name,
            s ? (s.value[1] === '1' ? 'up' : 'down') : states.get(h.name) === 'running' ? 'unknown' : 'down',
          ] as const
        }),
      )
      return {
        source: `the monitor (${url})`,
        hosts,
        tunnels: new Map(tunnels.map((x) => [x.metric.conn, x.value[1] === '1' ? 'up' : 'down'] as const)),
      }
    } catch {
      /* the monitor does not answer: Vagrant's view */
    }
  }
  return {
    source: 'Vagrant (the monitor does not answer)',
    hosts: new Map(plan.hosts.map((h) => [h.name, states.get(h.name) === 'running' ? 'up' : 'down'] as const)),
    tunnels: new Map(),
  }
}
