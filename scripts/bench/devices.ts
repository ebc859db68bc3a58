// How many devices (issue 20, "many devices"): an open-loop load on the full path
// (loadgen --rate: readings offered on a clock, whatever the server's pace), the offered
// rate doubled from a start until the lab no longer keeps up, once with one reading per
// request and once with batches. Each point: accepted against offered readings per
// second, p50 and p99 from the scheduled time, and the CPU of each tier over the run.
// The knee is the last point accepted within 5 % of what was offered; the tier busiest
// at the first point past it is named, with its share of the machine's cores. A device
// sending every 250 ms offers 4 readings a second: a rate is also so many devices.
import os from 'node:os'
import { clientOf, hostsWithRole } from '../../provision/plan.js'
import type { LoadResult } from '../../services/client/loadgen.js'
import { tiersDuring, type TierCpu } from './cpu.js'
import { saturationKnee, type Curve } from './curve.js'
import { prepare, storedSince } from './ingest.js'
import type { BenchLab } from './lab.js'

/** A device's reading interval, for saying how many devices a rate stands for. */
export const DEVICE_INTERVAL_S = 0.25

export interface DevicesOptions {
  /** The first offered rate, readings per second; each next point doubles it. */
  startRate: number
  /** No point beyond this rate. */
  maxRate: number
  /** Points past the knee to take before stopping (the curve flat or falling). */
  pastKnee: number
  duration: number
  warmup: number
  /** Requests in flight at most (the load generator sheds beyond). */
  inFlight: number
  /** Readings per request in the batched mode. */
  batch: number
  /** Device identities the load generator signs as. */
  devices: number
  /**
   * A point needs this many requests in the measured time: accepted readings are
   * counted by when each request is answered, so a few large batches would make a
   * coarse figure (a batch more or less is a step of 1/n). Lower rates are skipped.
   */
  minRequests: number
}

export interface DevicePoint {
  offered_per_s: number
  devices: number
  accepted_per_s: number
  p50_ms: number
  p99_ms: number
  shed: number
  failed: number
  /** The busiest tiers over the run, the load generator included. */
  tiers: TierCpu[]
  /** Acknowledged but not stored, and stored beyond what was sent (both must be 0). */
  lost: number
  extra: number
}

export interface DevicesMode {
  name: string
  batch: number
  points: DevicePoint[]
  knee?: DevicePoint
  /** At the first point past the knee: the busiest tier and the machine's cores in use. */
  saturation?: { at: number; tier: string; tier_cores: number; all_cores: number; machine_cores: number }
}

export interface DevicesReport {
  modes: DevicesMode[]
  /** The batched knee over the one-per-request knee (the goal: at least 10). */
  knee_ratio?: number
}

/** Where a mode's curve bends, and what was busiest just past it. */
export function kneeOf(m: Pick<DevicesMode, 'points'>, machineCores: number): Pick<DevicesMode, 'knee' | 'saturation'> {
  const knee = saturationKnee(m.points.map((p) => ({ x: p.offered_per_s, y: p.accepted_per_s })))
  const k = knee && m.points.find((p) => p.offered_per_s === knee.x)
  const past = m.points.find((p) => p.accepted_per_s < 0.95 * p.offered_per_s)
  const top = past?.tiers[0]
  return {
    ...(k ? { knee: k } : {}),
    ...(past && top
      ? {
          saturation: {
            at: past.offered_per_s,
            tier: top.tier,
            tier_cores: top.cores,
            all_cores: Math.round(past.tiers.reduce((s, x) => s + x.cores, 0) * 100) / 100,
            machine_cores: machineCores,
          },
        }
      : {}),
  }
}

export async function devicesBench(lab: BenchLab, o: DevicesOptions, log: (m: string) => void): Promise<DevicesReport> {
  const t = lab.plan
  const [client] = hostsWithRole(t, 'iot-client')
  const url = clientOf(t, client.name)!.url
  const prepared = await prepare(lab, client.name, o.devices)
  const machineCores = os.cpus().length
  log(
    `Devices: an open-loop load from ${client.name} on the full path, from ${o.startRate} readings/s doubling up to ${o.maxRate}, ${o.duration} s (+${o.warmup} s warm-up) a point, at most ${o.inFlight} requests in flight`,
  )
  const modes: DevicesMode[] = []
  for (const batch of [1, o.batch]) {
    const name = batch === 1 ? 'one reading per request' : `batches of ${batch}`
    const points: DevicePoint[] = []
    let past = 0
    for (let rate = o.startRate; rate <= o.maxRate && past < o.pastKnee; rate *= 2) {
      if ((rate * o.duration) / batch < o.minRequests) continue
      const base = Date.now() * 1000
      const { result: r, tiers } = await tiersDuring(
        lab,
        client.name,
        async () =>
          JSON.parse(
            await lab.must(
              client.name,
              `node ${prepared.code} --url ${url} --keys ${prepared.keys} --devices ${o.devices} --concurrency ${o.inFlight} --duration ${o.duration} --warmup ${o.warmup} --seq-base ${base} --batch ${batch} --rate ${rate}`,
            ),
          ) as LoadResult,
        (x) => x.cpu_s,
      )
      const stored = Object.values(await storedSince(lab, base)).reduce((a, b) => a + b, 0)
      const p: DevicePoint = {
        offered_per_s: rate,
        devices: Math.round(rate * DEVICE_INTERVAL_S),
        accepted_per_s: r.readings_per_s,
        p50_ms: r.latency_ms.p50,
        p99_ms: r.latency_ms.p99,
        shed: r.open?.shed ?? 0,
        failed: r.open?.failed ?? 0,
        tiers: tiers.slice(0, 5),
        lost: Math.max(0, r.acked - stored),
        extra: Math.max(0, stored - r.acked - r.unacked),
      }
      points.push(p)
      if (p.accepted_per_s < 0.95 * rate) past++
      log(
        `  ${name}: offered ${rate}/s (${p.devices} devices): accepted ${p.accepted_per_s}/s, p50 ${p.p50_ms} ms, p99 ${p.p99_ms} ms${p.shed ? `, shed ${p.shed}` : ''}${p.failed ? `, failed ${p.failed}` : ''}${p.lost ? `, LOST ${p.lost}` : ''}; busiest ${p.tiers
          .slice(0, 3)
          .map((x) => `${x.tier} ${x.cores} cores`)
          .join(', ')}`,
      )
    }
    modes.push({ name, batch, points, ...kneeOf({ points }, machineCores) })
  }
  const [one, many] = modes
  return {
    modes,
    ...(one.knee && many.knee
      ? { knee_ratio: Math.round((many.knee.offered_per_s / one.knee.offered_per_s) * 10) / 10 }
      : {}),
  }
}

/** Accepted against offered for each mode, with y = x and each knee marked. */
export function devicesCurve(d: DevicesReport): Curve {
  return {
    title: 'Devices: accepted against offered readings per second (open loop, full path)',
    x: 'offered readings/s',
    y: 'accepted readings/s',
    identity: true,
    log: true,
    series: d.modes.map((m) => ({
      name: m.name,
      points: m.points.map((p) => ({ x: p.offered_per_s, y: p.accepted_per_s })),
    })),
    marks: d.modes.flatMap((m) =>
      m.knee
        ? [
            {
              at: { x: m.knee.offered_per_s, y: m.knee.accepted_per_s },
              label: `${m.name}: knee ${m.knee.offered_per_s}/s${m.saturation ? ` (${m.saturation.tier} ${m.saturation.tier_cores} cores)` : ''}`,
            },
          ]
        : [],
    ),
  }
}
