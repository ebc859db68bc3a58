// lab-ipsec-metrics: strongSwan's state as Prometheus metrics, for node exporter's
// textfile collector (runs as root on each gateway: swanctl talks to charon over its
// vici socket). Every few seconds: the configured connections (swanctl --list-conns),
// their IKE and child SAs (swanctl --list-sas --raw), written atomically to
// <dir>/lab_ipsec.prom. Byte and packet counters are kept monotonic across rekeys
// (each child SA's counters start at zero; this adds their growth), and rekeys are
// counted as new child SAs of a connection that stayed up.
//   node lab-ipsec-metrics.cjs --dir /var/lib/prometheus/node-exporter --host gw-iot --mode kernel
// Every row carries the tunnel end this host serves (side): its own name, or its hub
// pair's, so the monitor judges a pair by its active member (the standby has no SA).
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { parseRawSas, type IkeSa } from '../lib/swanctl.js'
import { parseArgs } from '../lib/args.js'

const run = promisify(execFile)
const USAGE = '--dir DIR --host NAME --mode kernel|libipsec [--side NAME] [--interval-ms MS]'

interface Totals {
  bytesIn: number
  bytesOut: number
  packetsIn: number
  packetsOut: number
  rekeys: number
}
const totals = new Map<string, Totals>() // by connection/child
const lastSeen = new Map<string, { bytesIn: number; bytesOut: number; packetsIn: number; packetsOut: number }>() // by child SA uniqueid
const childIds = new Map<string, Set<string>>() // child SA uniqueids seen per connection/child, for rekeys

/** Pure: the metrics text for the configured connections and the SAs now up. */
export function render(
  host: string,
  mode: string,
  conns: string[],
  sas: IkeSa[],
  now = Date.now(),
  side = host,
): string {
  const esc = (v: string) => v.replace(/["\\\n]/g, '_')
  const lines: string[] = []
  const metric = (name: string, help: string, type: string, rows: [Record<string, string>, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, v] of rows)
      lines.push(
        `${name}{${Object.entries({ host, side, ...labels })
          .map(([k, x]) => `${k}="${esc(x)}"`)
          .join(',')}} ${v}`,
      )
  }
  const ike = (c: string) => sas.filter((s) => s.name === c && s.state === 'ESTABLISHED')
  const children = (c: string) => ike(c).flatMap((s) => s.children.filter((ch) => ch.state === 'INSTALLED'))
  metric(
    'lab_ipsec_ike_sa_up',
    'An IKE SA of this connection is established',
    'gauge',
    conns.map((c) => [{ conn: c }, ike(c).length > 0 ? 1 : 0]),
  )
  metric(
    'lab_ipsec_child_sa_up',
    'A child SA of this connection is installed (traffic can flow)',
    'gauge',
    conns.map((c) => [{ conn: c, child: c }, children(c).length > 0 ? 1 : 0]),
  )
  metric(
    'lab_ipsec_ike_sa_established_seconds',
    'How long the IKE SA has been up',
    'gauge',
    conns.flatMap((c) =>
      ike(c)
        .slice(0, 1)
        .map((s) => [{ conn: c }, Number(s.fields.established ?? 0)] as [Record<string, string>, number]),
    ),
  )
  for (const c of conns) {
    const t = totals.get(c) ?? { bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0, rekeys: 0 }
    const ids = childIds.get(c) ?? new Set<string>()
    for (const ch of children(c)) {
      const id = ch.fields.uniqueid
      const cur = {
        bytesIn: Number(ch.fields['bytes-in'] ?? 0),
        bytesOut: Number(ch.fields['bytes-out'] ?? 0),
        packetsIn: Number(ch.fields['packets-in'] ?? 0),
        packetsOut: Number(ch.fields['packets-out'] ?? 0),
      }
      const prev = lastSeen.get(id) ?? { bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0 }
      t.bytesIn += Math.max(0, cur.bytesIn - prev.bytesIn)
      t.bytesOut += Math.max(0, cur.bytesOut - prev.bytesOut)
      t.packetsIn += Math.max(0, cur.packetsIn - prev.packetsIn)
      t.packetsOut += Math.max(0, cur.packetsOut - prev.packetsOut)
      lastSeen.set(id, cur)
      // A new child SA while one was already known for this connection: a rekey (or a re-establishment).
      if (!ids.has(id) && ids.size > 0) t.rekeys++
      ids.add(id)
    }
    totals.set(c, t)
    childIds.set(c, ids)
  }
  const rows = (k: keyof Totals) =>
    conns.map((c) => [{ conn: c, child: c }, totals.get(c)![k]] as [Record<string, string>, number])
  metric(
    'lab_ipsec_child_bytes_in_total',
    'Bytes received through the tunnel (decrypted), since this exporter started',
    'counter',
    rows('bytesIn'),
  )
  metric(
    'lab_ipsec_child_bytes_out_total',
    'Bytes sent through the tunnel, since this exporter started',
    'counter',
    rows('bytesOut'),
  )
  metric('lab_ipsec_child_packets_in_total', 'Packets received through the tunnel', 'counter', rows('packetsIn'))
  metric('lab_ipsec_child_packets_out_total', 'Packets sent through the tunnel', 'counter', rows('packetsOut'))
  metric(
    'lab_ipsec_child_sa_new_total',
    'Child SAs that replaced another of the connection: rekeys and re-establishments',
    'counter',
    rows('rekeys'),
  )
  metric('lab_ipsec_datapath_info', 'Where ESP runs: kernel (XFRM) or libipsec (charon, userspace)', 'gauge', [
    [{ mode }, 1],
  ])
  metric('lab_ipsec_metrics_updated_seconds', 'When these metrics were written', 'gauge', [
    [{}, Math.round(now / 1000)],
  ])
  return lines.join('\n') + '\n'
}

async function once(a: Record<string, string>) {
  const connsRaw = (await run('swanctl', ['--list-conns', '--raw'])).stdout
  const conns = [...connsRaw.matchAll(/^list-conn event \{(\S+) \{/gm)].map((m) => m[1])
  const sas = parseRawSas((await run('swanctl', ['--list-sas', '--raw'])).stdout)
  const text = render(a.host, a.mode, conns, sas, Date.now(), a.side ?? a.host)
  const file = path.join(a.dir, 'lab_ipsec.prom')
  fs.writeFileSync(`${file}.tmp`, text, { mode: 0o644 })
  fs.renameSync(`${file}.tmp`, file) // node exporter never reads half a file
}

let failing = false
async function loop(a: Record<string, string>) {
  try {
    await once(a)
    if (failing) process.stdout.write('swanctl answers again\n')
    failing = false
  } catch (e) {
    // charon restarting: say so once, keep the last file (its timestamp shows its age).
    if (!failing) process.stdout.write(`cannot read strongSwan's state: ${(e as Error).message.split('\n')[0]}\n`)
    failing = true
  }
  setTimeout(() => void loop(a), Number(a['interval-ms'] ?? 2500))
}

// Run as the bundled service; imported (by the unit tests), it only offers render().
if (process.argv[1]?.includes('lab-ipsec-metrics')) {
  const a = parseArgs(process.argv.slice(2), USAGE)
  if (!a.dir || !a.host || !a.mode) throw new Error(`usage: ${USAGE}`)
  void loop(a)
}
