// npm run bench -- --ha: the pairs' failover, measured over rounds under the IoT client's
// own stream (resumed for it: the rest of the bench pauses it). Each round faults each
// member of each pair (the active one, then the standby) with each host fault (stopped
// hard, frozen, cut off: npm run lab:fault's operations), holds the fault until readings
// are acknowledged again and at least HOLD_MS has passed, undoes it and waits for the
// member to be back in its pair. What is measured per fault: how long until the other
// member held the virtual address, and the longest gap in storage of the client's
// readings (received_at) from the fault's start to the end of its recovery. Every
// reading the client took over the whole run must be stored exactly once; the report
// says how many were not. A benchmark: it fails only when it cannot measure.
import { CLIENT_CONTROL_PORT } from '../../provision/ports.js'
import { waitFor } from '../../provision/lib/wait.js'
import { serviceName, type Host, type VrrpGroup } from '../../provision/plan.js'
import { clearFault, HOST_FAULTS, makeFault, type HostFault } from '../lib/host-faults.js'
import { holdersOf, holdsAddress, type Run } from '../lib/vrrp-holders.js'
import type { BenchLab } from './lab.js'
import { telemetrySql } from './ingest.js'
import { figure, type Figure } from './stats.js'

/** How long a fault is held at least: a standby's fault has no stall to wait for. */
const HOLD_MS = 5_000
export const MEMBERS = ['active', 'standby'] as const
export type Member = (typeof MEMBERS)[number]

export interface HaCell {
  group: string
  fault: HostFault
  member: Member
  /** Longest gap in storage, seconds, per round. */
  stall: Figure
  /** Seconds from the fault to the other member holding the address (the active member's faults). */
  takeover?: Figure
}

export interface HaReport {
  rounds: number
  cells: HaCell[]
  /** Over the whole run: readings the client took, and how many of them are not stored exactly once. */
  readings: { taken: number; missing: number }
  seconds: number
}

/** The SQL for the longest gap (seconds) in storage of these devices' readings after `since`, the first counted from `since`. */
export function longestStallSql(since: string, devices: string[]): string {
  const ids = devices.map((d) => `'${d.replace(/'/g, "''")}'`).join(',')
  return `SELECT coalesce(round(extract(epoch FROM max(d))::numeric, 1), 0) FROM (SELECT received_at - coalesce(lag(received_at) OVER (ORDER BY received_at), '${since}'::timestamptz) AS d FROM readings WHERE received_at > '${since}' AND device_id IN (${ids})) g;`
}

interface Status {
  sent: number
  pending: number
  generated: number
  devices: Record<string, number>
}

export async function haBench(
  lab: BenchLab,
  o: { rounds: number; groups: VrrpGroup[]; faults?: HostFault[] },
  log: (m: string) => void,
): Promise<HaReport> {
  const started = Date.now()
  const plan = lab.plan
  const [client] = plan.hosts.filter((h) => h.role === 'iot-client')
  // The primary, whichever member it is when asked (a database fault moves it).
  const db = serviceName(plan, 'db')
  if (!client || !db)
    throw new Error(
      "--ha measures the IoT client's stream into the database: the topology has no iot-client or db host",
    )
  const host = (name: string) => plan.hosts.find((h) => h.name === name)!
  const control = async (path: string, method = 'GET'): Promise<Status> =>
    JSON.parse(
      await lab.must(client.name, `curl -s -f -m 5 -X ${method} http://127.0.0.1:${CLIENT_CONTROL_PORT}${path}`),
    ) as Status
  const sql = async (query: string) => (await telemetrySql(lab, query)).trim()
  const flowingAfter = (what: string, sent: number) =>
    waitFor(`${what}: readings acknowledged again`, async () => (await control('/status')).sent > sent, 60_000, 250)
  const run: Run = (h, c) => lab.sh(h, c)
  const holds = (m: string, address: string) => holdsAddress(run, m, address)
  const holder = async (g: VrrpGroup): Promise<Host | undefined> => {
    const who = await holdersOf(run, g)
    return who.length === 1 ? host(who[0]) : undefined
  }
  const quiet = () => {}

  await control('/resume', 'POST')
  const mark = await control('/status')
  const cells = new Map<string, { stalls: number[]; takeovers: number[] }>()
  try {
    for (let round = 1; round <= o.rounds; round++) {
      for (const g of o.groups) {
        for (const fault of o.faults ?? HOST_FAULTS) {
          for (const member of MEMBERS) {
            await flowingAfter('before the fault', (await control('/status')).sent)
            const active = await waitFor(`one member of ${g.name} to hold its address`, () => holder(g), 60_000, 500)
            const victim = member === 'active' ? active : host(g.members.find((m) => m.host !== active.name)!.host)
            const since = await sql('SELECT now();')
            const { sent } = await control('/status')
            const t0 = Date.now()
            await makeFault(plan, victim, fault, quiet)
            let takeover: number | undefined
            let other: Host | undefined
            try {
              if (member === 'active') {
                // Any other member: the database cluster's new primary is Patroni's choice.
                other = await waitFor(
                  `another member of ${g.name} to hold its address`,
                  async () => {
                    for (const m of g.members.filter((x) => x.host !== victim.name))
                      if (await holds(m.host, g.addresses[0].address)) return host(m.host)
                    return undefined
                  },
                  60_000,
                  200,
                )
                takeover = (Date.now() - t0) / 1000
              }
              await flowingAfter(`${victim.name} ${fault}`, sent)
              // The experiment's design, not a wait for something: a fault lasts HOLD_MS at least.
              const left = HOLD_MS - (Date.now() - t0)
              if (left > 0) await new Promise((resolve) => setTimeout(resolve, left))
            } finally {
              await clearFault(plan, victim, quiet)
            }
            // Back in its pair: its keepalived runs and one member holds the address. A
            // database member also runs in the cluster again (Patroni's /health: PostgreSQL
            // running, rewound or cloned): the next fault must not find it half back (a
            // power cut in its rewind is another experiment, db-failover.ts's).
            const cluster = g.role === 'db' ? plan.services.db?.cluster : undefined
            const own = plan.services.db?.members.find((m) => m.host === victim.name)?.address
            await waitFor(
              `${victim.name} back in ${g.name}${cluster ? ' and running in the cluster' : ''}`,
              async () =>
                (await lab.sh(victim.name, 'systemctl is-active keepalived.service')).stdout.trim() === 'active' &&
                !!(await holder(g)) &&
                (!cluster ||
                  (
                    await lab.sh(
                      victim.name,
                      `curl -fsS -o /dev/null --max-time 2 http://${own}:${cluster.patroniPort}/health`,
                    )
                  ).code === 0),
              // A member cloned again from the leader (its rewind not possible) copies the
              // whole database first: minutes on a lab with a history (2.4 million
              // readings: over 3 minutes here, 6 Dec 2026).
              cluster ? 900_000 : 90_000,
              500,
            )
            await flowingAfter(`${victim.name} back`, (await control('/status')).sent)
            const stall = Number(await sql(longestStallSql(since, Object.keys(mark.devices))))
            const key = `${g.name} ${fault} ${member}`
            const c = cells.get(key) ?? { stalls: [], takeovers: [] }
            c.stalls.push(stall)
            if (takeover !== undefined) c.takeovers.push(takeover)
            cells.set(key, c)
            log(
              `  round ${round}: ${g.name} ${member} (${victim.name}) ${fault}: stall ${stall.toFixed(1)} s${takeover !== undefined && other ? `, ${other.name} held the address after ${takeover.toFixed(1)} s` : ''}`,
            )
          }
        }
      }
    }
  } finally {
    await control('/resume', 'POST').catch(() => undefined)
  }
  const readings = await exactlyOnce(control, sql, mark)
  return {
    rounds: o.rounds,
    cells: [...cells].map(([key, c]) => {
      const [group, fault, member] = key.split(' ') as [string, HostFault, Member]
      return {
        group,
        fault,
        member,
        stall: figure(c.stalls),
        ...(c.takeovers.length ? { takeover: figure(c.takeovers) } : {}),
      }
    }),
    readings,
    seconds: (Date.now() - started) / 1000,
  }
}

/** Pause the client, let its outbox drain, and count the readings taken since the mark that are not stored exactly once. */
async function exactlyOnce(
  control: (path: string, method?: string) => Promise<Status>,
  sql: (q: string) => Promise<string>,
  mark: Status,
): Promise<HaReport['readings']> {
  await control('/pause', 'POST')
  try {
    const s = await waitFor(
      'the outbox to drain',
      async () => {
        const x = await control('/status')
        return x.pending === 0 && x
      },
      120_000,
      500,
    )
    let missing = 0
    for (const [d, last] of Object.entries(s.devices)) {
      const from = mark.devices[d] ?? 0
      if (last <= from) continue
      const [n, distinct] = (
        await sql(
          `SELECT count(*), count(DISTINCT seq) FROM readings WHERE device_id = '${d.replace(/'/g, "''")}' AND seq > ${from} AND seq <= ${last};`,
        )
      )
        .split('|')
        .map(Number)
      missing += last - from - Math.min(n, distinct)
    }
    return { taken: s.generated - mark.generated, missing }
  } finally {
    await control('/resume', 'POST')
  }
}

/** The report's table: one row per pair, fault and member. */
export function haMarkdown(r: HaReport): string {
  const f = (x?: Figure) => (x ? `${x.median.toFixed(1)} / ${x.max.toFixed(1)}` : '-')
  return [
    `## Failover (npm run bench -- --ha), ${r.rounds} rounds, ${r.seconds.toFixed(0)} s`,
    '',
    "Under the IoT client's own stream; each fault made by `npm run lab:fault` and undone. Seconds, median / worst.",
    '',
    '| pair | fault | member | longest stall in storage | other member holds the address after |',
    '| --- | --- | --- | --- | --- |',
    ...r.cells.map((c) => `| ${c.group} | ${c.fault} | ${c.member} | ${f(c.stall)} | ${f(c.takeover)} |`),
    '',
    `Readings the client took during the run: ${r.readings.taken}; not stored exactly once: ${r.readings.missing}.`,
    '',
  ].join('\n')
}
