// The benchmark's report: JSON with every run's figures, and Markdown for people, with
// the machine described, each figure as median (lowest to highest run), the ratios
// that say what the proxy and the tunnel cost, and the chart.
import type { BringUp } from './bringup.js'
import { chart } from './chart.js'
import type { CpuUse } from './cpu.js'
import type { LoadOptions, Scenario, Tuning } from './ingest.js'
import type { OutboxFigures } from './outbox.js'
import { show, type Figure } from './stats.js'
import type { DatapathFigures } from './datapath.js'
import type { TunnelFigures } from './tunnel.js'
import type { DevicesReport } from './devices.js'
import type { BackendsReport } from './backends.js'
import type { LineFit } from './curve.js'
import type { LookupReport } from './esp-lookup.js'
import { SITES_CHARTS, hubMsPerSetup, sitesChartsDrawn, type SitesReport } from './sites.js'

export interface Machine {
  cores: number
  memory_gib: number
  cpu: string
  kernel: string
  provider: string
  ipsec_mode: string
  hosts: number
  node_on_hosts: string
  nginx: string
  postgresql: string
  strongswan: string
}

export interface BenchReport {
  label: string
  started: string
  seconds: number
  machine: Machine
  load: LoadOptions
  ingest: {
    scenarios: Scenario[]
    scaling: Scenario[]
    cpu: CpuUse[]
    tuning?: Tuning
    upload?: Tuning
    cloudTls?: Tuning
    /** With a database cluster: asynchronous against strict synchronous replication. */
    syncRepl?: Tuning
  }
  /** The open-loop devices curve (issue 20). */
  devices?: DevicesReport
  tunnel?: TunnelFigures
  /** Kernel ESP against kernel-libipsec on the same gateways (VMs only). */
  datapath?: DatapathFigures
  outbox?: OutboxFigures[]
  /** The database cluster's leader and timeline before and after the measurements (a failover under load would change them). */
  cluster?: { before: string; after: string }
  bringup: BringUp
  /** Every run stored exactly what was acknowledged, and nothing went unacknowledged. */
  zero_loss: boolean
}

const ratio = (a: Figure, b: Figure) => (b.median > 0 ? a.median / b.median : NaN)
const pct = (x: number) => `${(x * 100).toFixed(x < 0.1 ? 2 : 1)} %`

export function svgChart(r: BenchReport): string {
  const byId = (id: string) => r.ingest.scenarios.find((s) => s.id === id)
  const paths = ['lan-direct', 'tunnel-direct', 'full'].map(byId).filter((s): s is Scenario => !!s)
  return chart(
    [
      {
        title: 'Readings/s by path',
        unit: 'readings per second',
        series: ['readings/s'],
        groups: paths.map((s) => ({ label: s.id, bars: [s.readings_per_s] })),
      },
      {
        title: 'Readings/s against back ends',
        unit: 'readings per second',
        series: ['readings/s'],
        groups: r.ingest.scaling.map((s) => ({
          label: `${s.backends} backend${s.backends > 1 ? 's' : ''}`,
          bars: [s.readings_per_s],
        })),
      },
      {
        title: 'Latency',
        unit: 'milliseconds',
        series: ['p50', 'p99'],
        groups: [...paths, ...r.ingest.scaling.slice(0, -1)].map((s) => ({ label: s.id, bars: [s.p50_ms, s.p99_ms] })),
      },
    ],
    `${r.label}: ${r.load.devices} devices, ${r.load.concurrency} connections, ${r.load.runs} runs of ${r.load.duration} s; bars: median, whiskers: lowest to highest run`,
  )
}

export function markdown(r: BenchReport): string {
  const m = r.machine
  const s = (id: string) => r.ingest.scenarios.find((x) => x.id === id)
  const full = s('full'),
    direct = s('tunnel-direct'),
    lan = s('lan-direct')
  const row = (x: Scenario) =>
    `| ${x.title} | ${show(x.readings_per_s)} | ${show(x.p50_ms, 1)} | ${show(x.p99_ms, 1)} | ${x.runs.reduce((n, y) => n + y.check.acked, 0)} | ${x.lost} |`
  const lines = [
    `# Benchmark: ${r.label}`,
    '',
    `Run ${r.started}, ${r.seconds.toFixed(0)} s in all. Every figure is the median of ${r.load.runs} runs, with the lowest and highest run in brackets.`,
    '',
    '## Machine',
    '',
    `| cores | memory | CPU | kernel | provider | IPsec data path | hosts |`,
    `| --- | --- | --- | --- | --- | --- | --- |`,
    `| ${m.cores} | ${m.memory_gib.toFixed(1)} GiB | ${m.cpu} | ${m.kernel} | ${m.provider} | ${m.ipsec_mode} | ${m.hosts} |`,
    '',
    `On the hosts: Node.js ${m.node_on_hosts}, nginx ${m.nginx}, PostgreSQL ${m.postgresql}, strongSwan ${m.strongswan}. All hosts share the machine's cores: the load generator, both gateways, nginx, the backends and PostgreSQL compete for them.`,
    '',
    ...(r.cluster
      ? [
          `The database cluster: ${r.cluster.before} before the measurements, ${r.cluster.after} after${r.cluster.before === r.cluster.after ? ': no failover under their load' : ': **it failed over under their load**'}.`,
          '',
        ]
      : []),
    '## Ingest',
    '',
    `Signed readings from ${r.load.devices} simulated devices over ${r.load.concurrency} keep-alive connections (each sends its next reading when the last is answered), ${r.load.duration} s per run after ${r.load.warmup} s of warm-up. After each run the readings stored are counted against those acknowledged.`,
    '',
    `**Readings lost or duplicated, all runs: ${r.zero_loss ? 'none' : 'SOME (see the JSON)'}.**`,
    '',
    '| path | readings/s | p50 ms | p99 ms | acknowledged (all runs) | lost |',
    '| --- | --- | --- | --- | --- | --- |',
    ...r.ingest.scenarios.map(row),
    '',
  ]
  if (full && direct && lan) {
    lines.push(
      `- What the proxy costs: the full path carries ${pct(ratio(full.readings_per_s, direct.readings_per_s))} of the readings per second of the tunnel straight to one backend (with ${full.backends} backends behind nginx against 1 without it).`,
      `- What the tunnel costs: straight to one backend through the tunnel carries ${pct(ratio(direct.readings_per_s, lan.readings_per_s))} of the same from inside the cloud LAN; p50 latency ${show(direct.p50_ms, 1)} ms against ${show(lan.p50_ms, 1)} ms.`,
      '',
    )
  }
  lines.push(
    '### Scaling with back ends (full path)',
    '',
    '| backends | readings/s | p50 ms | p99 ms | lost |',
    '| --- | --- | --- | --- | --- |',
    ...r.ingest.scaling.map(
      (x) => `| ${x.backends} | ${show(x.readings_per_s)} | ${show(x.p50_ms, 1)} | ${show(x.p99_ms, 1)} | ${x.lost} |`,
    ),
    '',
  )
  lines.push('![readings per second and latency](chart.svg)', '')
  const change = (a: Figure, b: Figure) =>
    a.median > 0
      ? `${b.median >= a.median ? '+' : ''}${(((b.median - a.median) / a.median) * 100).toFixed(0)} %`
      : 'n/a'
  const sideBySide = (tu: Tuning, heading: string, what: string) =>
    lines.push(
      `### ${heading}: ${tu.name}`,
      '',
      `Off: ${tu.off}. On: ${tu.on} (${what}). The runs alternate off, on, off, on..., so that the machine's noise hits both.`,
      '',
      '| path | figure | off | on | change |',
      '| --- | --- | --- | --- | --- |',
      ...tu.scenarios.flatMap((x) => [
        `| ${x.id} | readings/s | ${show(x.off.readings_per_s)} | ${show(x.on.readings_per_s)} | ${change(x.off.readings_per_s, x.on.readings_per_s)} |`,
        `| ${x.id} | p50 ms | ${show(x.off.p50_ms, 1)} | ${show(x.on.p50_ms, 1)} | ${change(x.off.p50_ms, x.on.p50_ms)} |`,
        `| ${x.id} | p99 ms | ${show(x.off.p99_ms, 1)} | ${show(x.on.p99_ms, 1)} | ${change(x.off.p99_ms, x.on.p99_ms)} |`,
        `| ${x.id} | lost | ${x.off.lost} | ${x.on.lost} | |`,
      ]),
      '',
    )
  if (r.ingest.tuning) sideBySide(r.ingest.tuning, 'Tuning, side by side in this run', 'what the provisioner sets')
  if (r.ingest.upload)
    sideBySide(
      r.ingest.upload,
      'Upload, side by side in this run',
      'how a client drains a backlog; fresh readings go as they come',
    )
  if (r.ingest.cloudTls)
    sideBySide(
      r.ingest.cloudTls,
      'TLS inside the cloud, side by side in this run',
      'what zero trust inside the cloud costs on the full path',
    )
  if (r.ingest.syncRepl)
    sideBySide(
      r.ingest.syncRepl,
      "The database's replication, side by side in this run",
      'what never losing an acknowledged reading to a failover costs on the full path',
    )
  if (r.ingest.cpu.length) {
    lines.push(
      '### Where the time goes (full path, all runs)',
      '',
      'CPU used by each process during the full-path runs, per 1000 readings acknowledged.',
      '',
      '| host | process | CPU s | CPU ms per 1000 readings |',
      '| --- | --- | --- | --- |',
      ...r.ingest.cpu.map((c) => `| ${c.host} | ${c.process} | ${c.cpu_s.toFixed(2)} | ${c.ms_per_1000_readings} |`),
      '',
    )
  }
  if (r.devices) lines.push(devicesMarkdown(r.devices))
  if (r.tunnel) {
    const tu = r.tunnel
    lines.push(
      '## Tunnel',
      '',
      `iperf3, one TCP stream; OpenSSL's ChaCha20-Poly1305 (the tunnel's ESP AEAD) on ${tu.packet_bytes}-byte blocks, one core. IPsec data path: ${tu.ipsec_mode}.`,
      '',
      '| what | Mbit/s |',
      '| --- | --- |',
      `| through the tunnel (iot-client → proxy) | ${show(tu.through_tunnel_mbit)} |`,
      `| without it (the two gateways over the simulated internet) | ${show(tu.without_tunnel_mbit)} |`,
      `| ChaCha20-Poly1305, one core | ${show(tu.crypto_one_core_mbit)} |`,
      '',
      `The tunnel reaches ${pct(ratio(tu.through_tunnel_mbit, tu.without_tunnel_mbit))} of the path without it and ${pct(ratio(tu.through_tunnel_mbit, tu.crypto_one_core_mbit))} of what one core can encrypt.`,
      '',
    )
  }
  if (r.datapath) {
    const d = r.datapath
    const emulated = d.accel !== 'kvm'
    lines.push(
      '## IPsec data paths on the same gateways',
      '',
      `iperf3, one TCP stream, iot-client → proxy, with the gateways' kernels doing ESP, then re-provisioned to strongSwan's userspace ESP (kernel-libipsec, LAB_IPSEC_MODE=libipsec), in alternating rounds; and the same gateways without a tunnel. VMs run with ${d.accel === 'kvm' ? 'KVM' : "QEMU's emulation (TCG)"}.`,
      '',
      '| data path | Mbit/s |',
      '| --- | --- |',
      `| kernel ESP (XFRM) | ${show(d.kernel_mbit)} |`,
      `| kernel-libipsec (userspace ESP in UDP) | ${show(d.libipsec_mbit)} |`,
      `| no tunnel (gateway to gateway) | ${show(d.no_tunnel_mbit)} |`,
      '',
      `Kernel ESP carries ${ratio(d.kernel_mbit, d.libipsec_mbit).toFixed(2)} times what userspace ESP does, and ${pct(ratio(d.kernel_mbit, d.no_tunnel_mbit))} of the link without a tunnel.`,
      ...(emulated
        ? [
            '',
            "Under emulation every instruction is translated, so only these ratios mean something, not the figures. On real hardware kernel ESP with ChaCha20-Poly1305 is bounded by one core per SA: WireGuard's published comparison (wireguard.com/performance, Linux 4.6 on Core i7, 1 Gbit/s NICs) measured 825 Mbit/s for kernel IPsec with ChaCha20-Poly1305, close to the link; this report's own `openssl speed` line above gives the cipher's limit on one core of this machine.",
          ]
        : []),
      '',
    )
  }
  if (r.outbox?.length) {
    lines.push(
      '## Client outbox',
      '',
      "A reading is on the IoT client's disk (appended to the outbox's log segment, fsynced) before it is sent. Durable readings per second on the client's own disk, by how many readings share one append (the client puts all its devices' readings of one interval in one append):",
      '',
      '| readings per append | readings/s | ms per append |',
      '| --- | --- | --- |',
      ...r.outbox.map((x) => `| ${x.batch} | ${show(x.readings_per_s)} | ${show(x.ms_per_append, 2)} |`),
      '',
    )
  }
  const b = r.bringup
  lines.push(
    '## Bring-up',
    '',
    '| what | seconds |',
    '| --- | --- |',
    `| re-provision with nothing to change (${b.reprovision_changed} changes) | ${show(b.reprovision_s, 1)} |`,
    b.warm
      ? `| warm \`npm run lab\` (box cached): vagrant up ${b.warm.vagrant_up_s.toFixed(0)}, provision ${b.warm.provision_s.toFixed(0)} | ${b.warm.total_s.toFixed(0)} |`
      : '| warm `npm run lab` | not measured in this run (`npm run bench -- --bringup`) |',
    b.cold
      ? `| cold \`npm run lab\` (box built): box ${b.cold.box_s.toFixed(0)}, vagrant up ${b.cold.vagrant_up_s.toFixed(0)}, provision ${b.cold.provision_s.toFixed(0)} | ${b.cold.total_s.toFixed(0)} |`
      : '| cold `npm run lab` | not measured in this run (`npm run bench -- --bringup`) |',
    '',
  )
  return lines.join('\n')
}

/** The devices curve: each point, each knee and what was busiest past it, the chart. */
export function devicesMarkdown(d: DevicesReport): string {
  const lines = [
    '## Devices: an open-loop load on the full path',
    '',
    "Readings offered on a clock (the load generator does not wait for the lab), from the IoT client through the tunnel and nginx to the backends and PostgreSQL; the offered rate doubles until the lab no longer keeps up. Accepted: readings acknowledged in the measured time; latency from each reading's scheduled time. A device sending every 250 ms offers 4 readings/s. Busiest: cores used by each tier's hosts over the run (the load generator is the iot-client).",
    '',
    '![accepted against offered](devices.svg)',
    '',
    '| mode | offered/s | devices | accepted/s | p50 ms | p99 ms | shed | failed | busiest (cores) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...d.modes.flatMap((m) =>
      m.points.map(
        (p) =>
          `| ${m.name} | ${p.offered_per_s} | ${p.devices} | ${p.accepted_per_s} | ${p.p50_ms} | ${p.p99_ms} | ${p.shed} | ${p.failed} | ${p.tiers
            .slice(0, 3)
            .map((x) => `${x.tier} ${x.cores}`)
            .join(', ')} |`,
      ),
    ),
    '',
  ]
  for (const m of d.modes) {
    const s = m.saturation
    lines.push(
      `- ${m.name}: ${m.knee ? `knee at ${m.knee.offered_per_s} readings/s offered (${m.knee.devices} devices), p99 ${m.knee.p99_ms} ms` : 'no knee: even the first point was not kept up with'}${s ? `; at ${s.at}/s the busiest tier is ${s.tier} (${s.tier_cores} cores), ${s.all_cores} of the machine's ${s.machine_cores} cores in use` : '; the lab kept up at every point measured (raise --max-rate)'}.`,
    )
  }
  if (d.knee_ratio !== undefined)
    lines.push(`- Batches' knee over one reading per request's: ${d.knee_ratio} times (the goal: at least 10).`)
  lines.push('')
  return lines.join('\n')
}

/** The backends curve: readings per second by number of capped backends, the fit, the efficiency. */
export function backendsMarkdown(b: BackendsReport): string {
  const lines = [
    `## Backends capped at ${b.cpus_each} of a core each`,
    '',
    `Every backend capped through its cgroup (the topology's \`cpus\`), the ones beyond the topology's added as data for the run; the full path with 1 to ${b.points.length} of them in nginx, batches of ${b.batch} readings per request. Busiest: cores used by each tier's hosts over the runs (the load generator is the iot-client).`,
    '',
    '![readings per second by backends](backends.svg)',
    '',
    '| backends | readings/s | p50 ms | p99 ms | lost | busiest (cores) |',
    '| --- | --- | --- | --- | --- | --- |',
    ...b.points.map(
      (p) =>
        `| ${p.backends} | ${p.readings_per_s} | ${p.p50_ms} | ${p.p99_ms} | ${p.lost} | ${p.tiers
          .slice(0, 3)
          .map((x) => `${x.tier} ${x.cores}`)
          .join(', ')} |`,
    ),
    '',
  ]
  if (b.fit)
    lines.push(
      `- Fitted line: ${b.fit.slope.toFixed(0)} readings/s per backend added (r² ${b.fit.r2.toFixed(2)}, ${b.fit.n} points).`,
    )
  if (b.efficiency !== undefined)
    lines.push(
      `- Scaling efficiency: ${b.points.length} backends carry ${(b.efficiency * b.points.length).toFixed(2)} times one (${(b.efficiency * 100).toFixed(0)} %; the goal: 80 %).`,
    )
  if (b.busiest)
    lines.push(
      `- With all ${b.points.length}: the busiest tier is ${b.busiest.tier} (${b.busiest.cores} cores); the backends used ${(b.busiest.backends_of_cap * 100).toFixed(0)} % of their caps.`,
    )
  lines.push('')
  return lines.join('\n')
}

export function sitesMarkdown(r: SitesReport): string {
  const fmt = (x: number | null | undefined, d = 1) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(d))
  const ceiling = r.crypto.setups_per_core
  const drawn = new Set(sitesChartsDrawn(r).map((c) => c.file))
  const lines = [
    '## Sites against the hub',
    '',
    `A site farm (one container, each site with its own outer address, certificate from the lab CA and LAN) against the real hub, which serves all of them with one connection; the same proposals and timers as the lab's own site (DPD after ${r.dpd_s} s of silence). ${
      r.esp === 'kernel'
        ? "The hub's ESP is its own kernel's (VM gateways): memory, idle CPU and the bring-up's are the active hub's charon; the CPU per 1000 readings is the hub's whole VM (the kernel does the ESP, charon would show none), from its /proc/stat."
        : "Memory and CPU are the active hub's charon (userspace ESP here: kernel-libipsec), which does the ESP too."
    } Bring-up: from the farm's sites loaded (each initiating at once; the farm's charon already running with their credentials) to every IKE SA established on the hub. Restarts: every site back on the hub after its charon was restarted (graceful) or killed (crashed; systemd starts it again).`,
    '',
    `The hub's crypto, measured in this run (\`openssl speed\`): X25519 ${r.crypto.x25519}/s, Ed25519 sign ${r.crypto.ed25519_sign}/s and verify ${r.crypto.ed25519_verify}/s: at most **${ceiling} IKE setups/s per core** (two X25519, one signature, two verifications each); the goal is 10 % of it, ${Math.round(ceiling / 10)}/s.`,
    '',
    ...SITES_CHARTS.map((c) =>
      drawn.has(c.file) ? `![${c.alt}](${c.file})` : `(${c.alt}: not drawn, no point measured with sites up)`,
    ),
    '',
    '| sites | up | bring-up s | setups/s | cores over it (hub, farm) | hub ms/setup | charon MiB | idle cores | ms/1000 readings (first, last) | back after restart s | after crash s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.points.map(
      (p) =>
        `| ${p.sites} | ${p.established} | ${fmt(p.bringup_s)} | ${p.setups_per_s ?? '-'} | ${p.bringup_cores ? `${p.bringup_cores.hub}, ${p.bringup_cores.farm}` : '-'} | ${fmt(hubMsPerSetup(p)?.most, 2)} | ${fmt(p.hub_rss_mib)} | ${fmt(p.idle_cores, 3)} | ${p.ms_per_1000_readings ? `${fmt(p.ms_per_1000_readings.first, 0)}, ${fmt(p.ms_per_1000_readings.last, 0)}` : '-'} | ${fmt(p.restart_s.graceful)} | ${fmt(p.restart_s.crashed)} |`,
    ),
    '',
  ]
  const f = r.fits
  const slope = (name: string, fit: LineFit | undefined, unit: string, scale = 1, d = 2) =>
    fit &&
    lines.push(
      `- ${name}: ${(fit.slope * scale).toFixed(d)} ${unit} per site (r² ${fit.r2.toFixed(2)}, ${fit.n} points).`,
    )
  slope("The hub's memory", f.hub_rss_mib, 'KiB', 1024, 1)
  slope('Idle CPU (DPD)', f.idle_cores, 'millicores', 1000, 3)
  slope('Bring-up', f.bringup_s, 'ms', 1000, 1)
  slope('Back after a crash', f.restart_crashed_s, 'ms', 1000, 1)
  slope("The lab's site, CPU per 1000 readings (its tunnel first)", f.ms_per_1000_first, 'ms', 1, 3)
  const best = Math.max(0, ...r.points.map((p) => p.setups_per_s ?? 0))
  if (best)
    lines.push(
      `- Fastest bring-up: ${best} setups/s, ${((best / ceiling) * 100).toFixed(0)} % of one core's crypto ceiling.`,
    )
  // The ceiling is a core's: the hub's own rate per core of its CPU is what compares with
  // it. The bring-up's rate above is bounded by the farm too, which stands for the
  // sites' own machines and here takes the same two cores (about twice the hub's CPU).
  const perSetup = r.points
    .map((p) => ({ sites: p.sites, ms: hubMsPerSetup(p) }))
    .filter((x): x is { sites: number; ms: NonNullable<ReturnType<typeof hubMsPerSetup>> } => x.ms !== null)
  if (perSetup.length) {
    const rate = (ms: number) =>
      `${Math.round(1000 / ms)} setups per second of a core (${((1000 / ms / ceiling) * 100).toFixed(1)} % of the ceiling)`
    const at = (x: (typeof perSetup)[number]) =>
      `${x.ms.most.toFixed(2)} ms at ${x.sites} sites, ${rate(x.ms.most)}` +
      (x.ms.least !== null && x.ms.least > 0
        ? `; less the DPD of all of them idle, ${x.ms.least.toFixed(2)} ms, ${rate(x.ms.least)}`
        : '')
    const lowest = perSetup.reduce((a, b) => (b.ms.most < a.ms.most ? b : a))
    const largest = perSetup[perSetup.length - 1]
    lines.push(
      `- The hub's own CPU per setup (everything its charon did over the bring-up, the DPD of the sites already up too, over the sites): at best ${at(lowest)}${largest.sites !== lowest.sites ? `. At the most sites, ${at(largest)}` : ''}.`,
    )
  }
  if (r.stopped) lines.push(`- Stopped growing: ${r.stopped}.`)
  lines.push('')
  return lines.join('\n')
}

export function espLookupMarkdown(r: LookupReport): string {
  const none = r.by_sites.find((b) => b.sites === 0)
  const lines = [
    "## Kernel ESP's lookups against other sites",
    '',
    `The hub (${r.hub}, a VM: its own kernel does ESP) holding other sites' SAs and policies as their tunnels would leave them (per site an inbound and an outbound ESP SA, and the in, fwd and out policies between its LAN and the hub's), written straight into XFRM, against none, in turn each round. The figure is the hub's whole VM, ms of CPU per 1000 readings of the lab's own site (emulated: its scale is not a container's, compare within this table).`,
    '',
    '| other sites | ms per 1000 readings, median (min to max) | rounds |',
    '| --- | --- | --- |',
    ...r.by_sites.map((b) => `| ${b.sites} | ${show(b.ms, 1)} | ${b.ms.runs.map((x) => x.toFixed(1)).join(', ')} |`),
    '',
  ]
  if (none)
    for (const b of r.by_sites.filter((x) => x.sites > 0)) {
      const d = b.ms.median - none.ms.median
      lines.push(
        `- With ${b.sites} other sites: ${d >= 0 ? '+' : ''}${d.toFixed(1)} ms per 1000 readings (${((d / none.ms.median) * 100).toFixed(1)} %) over none, ${((d / b.sites) * 1000).toFixed(1)} µs per site; the rounds of none spread over ${(none.ms.max - none.ms.min).toFixed(1)} ms.`,
      )
    }
  lines.push('')
  return lines.join('\n')
}
