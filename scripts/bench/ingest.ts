// Ingest throughput and latency over the lab's paths, with the load generator
// (services/client/loadgen.ts) on a lab host, and the stored count checked against the
// acknowledged one after every run: a run that lost or duplicated a reading says so.
import { bundle } from '../../services/build.js'
import type { LoadResult } from '../../services/client/loadgen.js'
import { deviceKeys } from '../../provision/secrets.js'
import { summarize as recapOf } from '../../provision/report.js'
import { MONITOR_PORTS } from '../../provision/ports.js'
import { isServiceRole, tlsFiles } from '../../provision/roles/service-tls.js'
import { provision } from '../../provision/run.js'
import {
  benchDeviceIds,
  clientOf,
  hostsWithRole,
  serviceName,
  vrrpGroupOf,
  withCloudTls,
} from '../../provision/plan.js'
import { repoRoot, stateDir } from '../../provision/paths.js'
import { cpuSample, cpuUse } from './cpu.js'
import { BENCH_DIR, type BenchLab } from './lab.js'
import { figure, type Figure } from './stats.js'

export interface LoadOptions {
  devices: number
  concurrency: number
  duration: number
  warmup: number
  runs: number
  batch?: number
}

export interface RunCheck {
  acked: number
  stored: number
  lost: number
  extra: number
  unacked: number
  duplicates_answered: number
  /** The stored readings by the backend that stored them. */
  by_backend: Record<string, number>
}

export interface Scenario {
  id: string
  title: string
  from: string
  url: string
  backends: number
  /** The load generator's TLS arguments, when it speaks to a backend's TLS port itself. */
  tls?: string
  runs: (LoadResult & { check: RunCheck })[]
  readings_per_s: Figure
  p50_ms: Figure
  p99_ms: Figure
  lost: number
}

type Prepared = { code: string; keys: string }
const preparedOn = new WeakMap<BenchLab, Map<string, Promise<Prepared>>>()

/** Put the load generator and the bench devices' keys on a host (for this run only), once per host. */
export function prepare(lab: BenchLab, host: string, devices: number): Promise<Prepared> {
  const cache = preparedOn.get(lab) ?? new Map<string, Promise<Prepared>>()
  preparedOn.set(lab, cache)
  const key = `${host} ${devices}`
  let p = cache.get(key)
  if (!p) {
    p = (async () => {
      const ids = benchDeviceIds(lab.plan).slice(0, devices)
      if (ids.length < devices)
        throw new Error(`the topology has ${ids.length} bench devices (telemetry.bench_devices); asked for ${devices}`)
      const code = await lab.put(host, 'lab-loadgen.cjs', await bundle('loadgen'))
      const keys = await lab.put(host, 'devices.json', JSON.stringify(deviceKeys(stateDir, ids)))
      return { code, keys }
    })()
    cache.set(key, p)
  }
  return p
}

/** Load from a host, not measured, for at least `minSeconds`: what a lab just changed needs before a first measured run. */
export async function settleLoad(lab: BenchLab, host: string, url: string, o: LoadOptions, minSeconds: number) {
  const p = await prepare(lab, host, o.devices)
  await lab.must(
    host,
    `node ${p.code} --url ${url} --keys ${p.keys} --devices ${o.devices} --concurrency ${o.concurrency} --duration ${Math.max(minSeconds, o.duration)} --warmup 0 --batch ${o.batch ?? 1}`,
  )
}

/** SQL on the telemetry database that serves (a cluster's primary), as postgres; its rows as psql prints them unaligned ('|' between fields). */
export const telemetrySql = (lab: BenchLab, sql: string) =>
  lab.must(serviceName(lab.plan, 'db')!, 'runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d telemetry', {
    stdin: sql,
  })

/** The run's readings in the database, by the backend that stored each. */
export async function storedSince(lab: BenchLab, base: number): Promise<Record<string, number>> {
  const out = await telemetrySql(
    lab,
    `SELECT backend, count(*) FROM readings WHERE device_id LIKE 'bench-%' AND seq > ${base} AND seq <= ${base + 10_000_000} GROUP BY backend ORDER BY backend;`,
  )
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('|'))
      .map(([b, n]) => [b, Number(n)]),
  )
}

export type ScenarioSpec = Omit<Scenario, 'runs' | 'readings_per_s' | 'p50_ms' | 'p99_ms' | 'lost'>

/** One run of the load generator, and the stored readings counted against the acknowledged. */
async function runOnce(
  lab: BenchLab,
  s: ScenarioSpec,
  o: LoadOptions,
  prepared: Prepared,
  log: (m: string) => void,
  tag: string,
): Promise<Scenario['runs'][number]> {
  const base = Date.now() * 1000
  const out = await lab.must(
    s.from,
    `node ${prepared.code} --url ${s.url} --keys ${prepared.keys} --devices ${o.devices} --concurrency ${o.concurrency} --duration ${o.duration} --warmup ${o.warmup} --seq-base ${base} --batch ${o.batch ?? 1}${s.tls ? ` ${s.tls}` : ''}`,
  )
  const r = JSON.parse(out) as LoadResult
  const byBackend = await storedSince(lab, base)
  const stored = Object.values(byBackend).reduce((a, b) => a + b, 0)
  const check: RunCheck = {
    acked: r.acked,
    stored,
    by_backend: byBackend,
    lost: Math.max(0, r.acked - stored),
    extra: Math.max(0, stored - r.acked - r.unacked),
    unacked: r.unacked,
    duplicates_answered: r.duplicates,
  }
  log(
    `  ${s.id} ${tag}: ${r.readings_per_s} readings/s, p50 ${r.latency_ms.p50} ms, p99 ${r.latency_ms.p99} ms; acked ${r.acked}, stored ${stored}${check.lost ? `, LOST ${check.lost}` : ''}${r.unacked ? `, unacked ${r.unacked}` : ''}`,
  )
  return { ...r, check }
}

export function summarize(s: ScenarioSpec, runs: Scenario['runs']): Scenario {
  return {
    ...s,
    runs,
    readings_per_s: figure(runs.map((r) => r.readings_per_s)),
    p50_ms: figure(runs.map((r) => r.latency_ms.p50)),
    p99_ms: figure(runs.map((r) => r.latency_ms.p99)),
    lost: runs.reduce((n, r) => n + r.check.lost + r.check.unacked, 0),
  }
}

export async function runScenario(
  lab: BenchLab,
  s: ScenarioSpec,
  o: LoadOptions,
  log: (m: string) => void,
): Promise<Scenario> {
  const prepared = await prepare(lab, s.from, o.devices)
  const runs: Scenario['runs'] = []
  for (let i = 0; i < o.runs; i++) runs.push(await runOnce(lab, s, o, prepared, log, `run ${i + 1}/${o.runs}`))
  return summarize(s, runs)
}

/** Two settings of the ingest servers' write batching, measured alternately in one run. */
export interface Tuning {
  name: string
  off: string
  on: string
  scenarios: { id: string; title: string; off: Scenario; on: Scenario }[]
}

async function setBatching(lab: BenchLab, batch: { maxBatch: number; maxInFlight: number } | 'provisioned') {
  for (const b of lab.plan.services.backends) {
    const saved = `${BENCH_DIR}/ingest-config.provisioned`
    if ((await lab.sh(b.name, `test -e ${saved}`)).code !== 0) {
      await lab.put(b.name, 'ingest-config.provisioned', '')
      await lab.must(b.name, `cp -p /etc/lab-ingest/config.json ${saved}`)
    }
    if (batch === 'provisioned') await lab.must(b.name, `cp -p ${saved} /etc/lab-ingest/config.json`)
    else
      await lab.must(
        b.name,
        `jq --argjson b '${JSON.stringify(batch)}' '.batch = $b' ${saved} > ${BENCH_DIR}/ingest-config.json && cat ${BENCH_DIR}/ingest-config.json > /etc/lab-ingest/config.json`,
      )
    await lab.must(
      b.name,
      `systemctl restart lab-ingest.service && for i in $(seq 50); do curl -sf -o /dev/null http://${b.address}:${MONITOR_PORTS.ingest}/healthz && exit 0; sleep 0.2; done; echo 'lab-ingest not healthy after restart' >&2; exit 1`,
    )
  }
}

/** Group commit against one write per reading, runs alternating, so that noise hits both. */
export async function batchingAB(
  lab: BenchLab,
  specs: ScenarioSpec[],
  o: LoadOptions,
  log: (m: string) => void,
): Promise<Tuning> {
  const modes = { off: { maxBatch: 1, maxInFlight: 8 }, on: { maxBatch: 200, maxInFlight: 2 } }
  const runs = new Map(specs.map((s) => [s.id, { off: [] as Scenario['runs'], on: [] as Scenario['runs'] }]))
  log(
    `Tuning, side by side: write batching off (one INSERT and commit per reading) and on (group commit), ${o.runs} alternating runs each`,
  )
  try {
    for (let i = 0; i < o.runs; i++) {
      for (const mode of ['off', 'on'] as const) {
        await setBatching(lab, modes[mode])
        for (const s of specs)
          runs
            .get(s.id)!
            [mode].push(
              await runOnce(
                lab,
                s,
                o,
                await prepare(lab, s.from, o.devices),
                log,
                `batching ${mode}, run ${i + 1}/${o.runs}`,
              ),
            )
      }
    }
  } finally {
    await setBatching(lab, 'provisioned')
  }
  return {
    name: 'write batching in the ingest servers',
    off: 'one INSERT and one commit per reading',
    on: 'group commit (up to 200 readings per INSERT, 2 in flight)',
    scenarios: specs.map((s) => ({
      id: s.id,
      title: s.title,
      off: summarize(s, runs.get(s.id)!.off),
      on: summarize(s, runs.get(s.id)!.on),
    })),
  }
}

/**
 * One reading per request against batches (application/x-ndjson, as a client drains a
 * backlog), over the full path, runs alternating. Latency is per request: a batch's
 * p50 is the time to acknowledge all its readings.
 */
export async function uploadAB(
  lab: BenchLab,
  spec: ScenarioSpec,
  o: LoadOptions,
  log: (m: string) => void,
): Promise<Tuning> {
  const batch = lab.plan.telemetry.batch > 1 ? lab.plan.telemetry.batch : 100
  const runs = { off: [] as Scenario['runs'], on: [] as Scenario['runs'] }
  log(`Upload, side by side: one reading per request and batches of ${batch}, ${o.runs} alternating runs each`)
  const prepared = await prepare(lab, spec.from, o.devices)
  for (let i = 0; i < o.runs; i++) {
    runs.off.push(
      await runOnce(lab, spec, { ...o, batch: 1 }, prepared, log, `one per request, run ${i + 1}/${o.runs}`),
    )
    runs.on.push(
      await runOnce(lab, spec, { ...o, batch }, prepared, log, `batches of ${batch}, run ${i + 1}/${o.runs}`),
    )
  }
  return {
    name: 'batch upload',
    off: 'one reading per request (application/json)',
    on: `batches of ${batch} readings per request (application/x-ndjson, telemetry.batch), latency per request`,
    scenarios: [{ id: spec.id, title: spec.title, off: summarize(spec, runs.off), on: summarize(spec, runs.on) }],
  }
}

/**
 * The cloud's services with TLS as provisioned, or without (telemetry.cloud_tls false):
 * a provision of the proxy, backends and database with the topology so changed.
 */
async function setCloudTls(lab: BenchLab, on: boolean) {
  const t = lab.plan
  const only = t.hosts.filter((h) => isServiceRole(h.role)).map((h) => h.name)
  const s = recapOf(await provision({ plan: withCloudTls(t, on), only, repoRoot, stateDir }))
  if (s.failed + s.unreachable)
    throw new Error(`provisioning ${only.join(', ')} with cloud_tls ${on} failed: run \`npm run provision\` to see why`)
  // Until every backend answers its health check through nginx again.
  const [proxy] = hostsWithRole(t, 'proxy')
  const [client] = hostsWithRole(t, 'iot-client')
  await lab.must(
    proxy.name,
    `for i in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:${new URL(clientOf(t, client.name)!.url).port || 80}/healthz && exit 0; sleep 0.2; done; echo 'no backend healthy through nginx' >&2; exit 1`,
  )
}

/**
 * The full path with TLS inside the cloud (nginx to the backends, the backends to
 * PostgreSQL) and without, runs alternating; the lab is put back as provisioned.
 */
export async function cloudTlsAB(
  lab: BenchLab,
  spec: ScenarioSpec,
  o: LoadOptions,
  log: (m: string) => void,
): Promise<Tuning> {
  log(
    `TLS inside the cloud, side by side: plain and mutual TLS (nginx to the backends, the backends to PostgreSQL), ${o.runs} alternating runs each`,
  )
  let now = lab.plan.telemetry.cloudTls
  const scenario = await alternating(lab, spec, o, log, {
    set: async (mode) => {
      now = mode === 'on'
      await setCloudTls(lab, now)
    },
    // Back to what the topology says, whatever happened.
    restore: async () => {
      if (now !== lab.plan.telemetry.cloudTls) await setCloudTls(lab, lab.plan.telemetry.cloudTls)
    },
    tag: (mode) => `cloud TLS ${mode}`,
  })
  return {
    name: 'TLS inside the cloud',
    off: 'plain HTTP to the backends, plain PostgreSQL protocol (telemetry.cloud_tls: false)',
    on: 'mutual TLS 1.3 (ECDSA P-256): nginx to the backends with session reuse over kept-alive connections, the backends to PostgreSQL',
    scenarios: [scenario],
  }
}

/**
 * One scenario with a setting off and on, runs alternating (off, on, off, on...) so that
 * the machine's noise hits both; `restore` puts the lab back whatever happened.
 */
export async function alternating(
  lab: BenchLab,
  spec: ScenarioSpec,
  o: LoadOptions,
  log: (m: string) => void,
  how: {
    set: (mode: 'off' | 'on') => Promise<void>
    restore: () => Promise<void>
    tag: (mode: 'off' | 'on') => string
  },
): Promise<Tuning['scenarios'][number]> {
  const runs = { off: [] as Scenario['runs'], on: [] as Scenario['runs'] }
  const prepared = await prepare(lab, spec.from, o.devices)
  try {
    for (let i = 0; i < o.runs; i++)
      for (const mode of ['off', 'on'] as const) {
        await how.set(mode)
        runs[mode].push(await runOnce(lab, spec, o, prepared, log, `${how.tag(mode)}, run ${i + 1}/${o.runs}`))
      }
  } finally {
    await how.restore()
  }
  return { id: spec.id, title: spec.title, off: summarize(spec, runs.off), on: summarize(spec, runs.on) }
}

/**
 * nginx with only the first k backends in use (the others marked down), for the scaling
 * curve: on the proxy that serves (a pair's active member, asked through its group's
 * name: the other's nginx carries nothing), checked after by where the readings went.
 */
export async function withBackends<T>(lab: BenchLab, k: number, fn: () => Promise<T>): Promise<T> {
  const [first] = hostsWithRole(lab.plan, 'proxy')
  const proxy = { name: vrrpGroupOf(lab.plan, first.name)?.name ?? first.name }
  const all = lab.plan.services.backends
  if (k >= all.length) return fn()
  // The provisioned file is kept byte for byte on the host (SSH output is trimmed).
  const saved = await lab.put(proxy.name, 'nginx.conf.provisioned', '')
  await lab.must(proxy.name, `cp -p /etc/nginx/nginx.conf ${saved}`)
  const original = await lab.must(proxy.name, 'cat /etc/nginx/nginx.conf')
  const down = new Set(all.slice(k).map((b) => `${b.address}:${b.port}`))
  const limited =
    original
      .split('\n')
      .map((l) => {
        const m = /^(\s*server )(\S+)( .*);$/.exec(l)
        return m && down.has(m[2]) ? `${m[1]}${m[2]}${m[3]} down;` : l
      })
      .join('\n') + '\n'
  await lab.must(proxy.name, 'cat > /etc/nginx/nginx.conf && nginx -q -t && systemctl reload nginx', { stdin: limited })
  try {
    return await fn()
  } finally {
    // Put back exactly what the provisioner wrote (npm run provision would, too).
    await lab.must(proxy.name, `cp -p ${saved} /etc/nginx/nginx.conf && systemctl reload nginx`)
  }
}

export async function ingestBench(lab: BenchLab, o: LoadOptions, log: (m: string) => void) {
  const t = lab.plan
  const [client] = hostsWithRole(t, 'iot-client')
  const [proxy] = hostsWithRole(t, 'proxy')
  const ups = t.services.backends
  const one = ups[0]
  const url = clientOf(t, client.name)!.url
  const scenarios: Scenario[] = []

  log(
    `Ingest: ${o.devices} devices, ${o.concurrency} connections, ${o.runs} runs of ${o.duration} s (+${o.warmup} s warm-up) each`,
  )
  // A lab just brought up is still settling (first-boot units, caches, connection
  // pools): some load first, not measured, so that the first scenario is not penalised.
  await settleLoad(lab, client.name, url, o, 2)
  const before = await cpuSample(lab)
  const full = await runScenario(
    lab,
    {
      id: 'full',
      title: `full path: ${client.name} → gateways and tunnel → nginx → ${ups.length} backends → PostgreSQL`,
      from: client.name,
      url,
      backends: ups.length,
    },
    o,
    log,
  )
  const acked = full.runs.reduce((n, r) => n + r.acked, 0)
  // The load generator has exited by now (its CPU is gone from /proc): it reports its own.
  const loadgen = full.runs.reduce((n, r) => n + r.cpu_s, 0)
  const cpu = [
    ...cpuUse(before, await cpuSample(lab), acked),
    {
      host: client.name,
      process: 'lab-loadgen (the load itself)',
      cpu_s: loadgen,
      ms_per_1000_readings: Math.round((loadgen * 1e6) / acked),
    },
  ].sort((a, b) => b.cpu_s - a.cpu_s)
  scenarios.push(full)

  // The tunnel straight to one backend: the backend admits the IoT LAN for the run. With
  // TLS in the cloud a backend admits the proxy's certificate alone, which the IoT client
  // does not have: then this path does not exist.
  if (!t.telemetry.cloudTls) {
    const iotLans = t.networks
      .filter((n) => n.kind === 'lan' && client.interfaces.some((i) => i.network === n.name))
      .map((n) => n.cidr)
    await lab.allow(one.name, `ip saddr { ${iotLans.join(', ')} } tcp dport ${one.port} accept`)
    scenarios.push(
      await runScenario(
        lab,
        {
          id: 'tunnel-direct',
          title: `${client.name} → gateways and tunnel → ${one.name} (no nginx) → PostgreSQL`,
          from: client.name,
          url: `http://${one.address}:${one.port}/readings`,
          backends: 1,
        },
        o,
        log,
      ),
    )
  } else {
    log("  tunnel-direct: not measured: with TLS in the cloud a backend admits the proxy's certificate alone")
  }

  // From the proxy host with the proxy's certificate, as nginx connects.
  const f = tlsFiles(proxy.name)
  const lanDirect = await runScenario(
    lab,
    {
      id: 'lan-direct',
      title: `${proxy.name} → ${one.name} on the cloud LAN (no tunnel, no nginx${t.telemetry.cloudTls ? ', mutual TLS' : ''}) → PostgreSQL`,
      from: proxy.name,
      ...(t.telemetry.cloudTls
        ? { url: `https://${one.address}:${one.port}/readings`, tls: `--ca ${f.ca} --cert ${f.cert} --key ${f.key}` }
        : { url: `http://${one.address}:${one.port}/readings` }),
      backends: 1,
    },
    o,
    log,
  )
  scenarios.push(lanDirect)

  const scaling: Scenario[] = []
  for (let k = 1; k < ups.length; k++) {
    const point = await withBackends(lab, k, () =>
      runScenario(
        lab,
        {
          id: `full-${k}`,
          title: `full path with ${k} backend${k > 1 ? 's' : ''}`,
          from: client.name,
          url,
          backends: k,
        },
        o,
        log,
      ),
    )
    // A point whose readings reached a backend marked down measured all of them (seen:
    // the first proxy's nginx changed while the pair's other member served).
    const used = ups.slice(0, k).map((b) => b.name)
    const strays = [...new Set(point.runs.flatMap((r) => Object.keys(r.check.by_backend)))].filter(
      (b) => !used.includes(b),
    )
    if (strays.length)
      throw new Error(
        `full-${k}: readings were stored by ${strays.join(', ')}, which nginx was told to leave out: the curve would not show ${k} backend(s); see npm run lab:status for the serving proxy`,
      )
    scaling.push(point)
  }
  scaling.push({ ...scenarios[0], id: `full-${ups.length}` })
  const tuning = await batchingAB(lab, [lanDirect, scenarios[0]], o, log)
  const upload = await uploadAB(lab, scenarios[0], o, log)
  const cloudTls = await cloudTlsAB(lab, scenarios[0], o, log)
  return { scenarios, scaling, cpu, tuning, upload, cloudTls }
}
