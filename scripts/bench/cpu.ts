// Where the time goes: CPU seconds each process used on each lab host during a
// measurement (from /proc before and after), so the report can say which layer costs
// most per reading: charon's userspace ESP, nginx, node, PostgreSQL...
import type { BenchLab } from './lab.js'

export type CpuSample = Map<string, number>

/** A process's name and CPU seconds so far (utime + stime, clock ticks of 1/100 s) from its /proc/PID/stat line. */
export function procCpu(statLine: string): { name: string; cpu_s: number } | undefined {
  const m = /^\d+ \((.*)\) (.*)$/.exec(statLine.trim())
  if (!m) return undefined
  const f = m[2].split(' ')
  return { name: m[1], cpu_s: (Number(f[11]) + Number(f[12])) / 100 }
}

/**
 * A host's whole busy CPU seconds so far (user, nice, system, irq, softirq), from its own
 * /proc/stat: a VM's, with its own kernel. (A container's /proc/stat is this machine's:
 * not asked there.)
 */
export async function hostCpuSeconds(lab: BenchLab, host: string): Promise<number> {
  const out = await lab.must(host, 'getconf CLK_TCK; head -1 /proc/stat')
  const [hz, cpu] = out.trim().split('\n')
  const f = cpu.trim().split(/\s+/).slice(1).map(Number)
  if (!(Number(hz) > 0) || f.length < 7 || f.some((x) => !Number.isFinite(x)))
    throw new Error(`cannot read ${host}'s CPU from /proc/stat: ${out}`)
  return (f[0] + f[1] + f[2] + f[5] + f[6]) / Number(hz)
}

export async function cpuSample(lab: BenchLab): Promise<CpuSample> {
  const out = new Map<string, number>()
  await Promise.all(
    lab.plan.hosts.map(async (h) => {
      // utime + stime of every process, in clock ticks (1/100 s): finer than ps.
      const r = await lab.sh(h.name, 'cat /proc/[0-9]*/stat 2>/dev/null')
      for (const line of r.stdout.trim().split('\n')) {
        const p = procCpu(line)
        if (!p) continue
        const key = `${h.name} ${p.name}`
        out.set(key, (out.get(key) ?? 0) + p.cpu_s)
      }
    }),
  )
  return out
}

export interface CpuUse {
  host: string
  process: string
  cpu_s: number
  ms_per_1000_readings: number
}

/** The processes that used the most CPU between two samples, per 1000 readings. */
export function cpuUse(before: CpuSample, after: CpuSample, readings: number, top = 10): CpuUse[] {
  return [...after]
    .map(([key, t]) => {
      const [host, ...proc] = key.split(' ')
      const cpu = t - (before.get(key) ?? 0)
      return {
        host,
        process: proc.join(' '),
        cpu_s: cpu,
        ms_per_1000_readings: readings ? Math.round((cpu * 1e6) / readings) : 0,
      }
    })
    .filter((u) => u.cpu_s > 0)
    .map((u) => ({ ...u, cpu_s: Math.round(u.cpu_s * 100) / 100 }))
    .sort((a, b) => b.cpu_s - a.cpu_s)
    .slice(0, top)
}

export interface TierCpu {
  tier: string
  /** Cores the tier's hosts used over the run, on average. */
  cores: number
}

/** CPU per tier between two samples: a host's role is its tier; cores = CPU seconds / wall seconds. */
export function tierCpu(
  roleOf: (host: string) => string | undefined,
  before: CpuSample,
  after: CpuSample,
  wallS: number,
): TierCpu[] {
  const by = new Map<string, number>()
  for (const [key, t] of after) {
    const host = key.split(' ')[0]
    const tier = roleOf(host) ?? host
    by.set(tier, (by.get(tier) ?? 0) + Math.max(0, t - (before.get(key) ?? 0)))
  }
  return [...by]
    .map(([tier, s]) => ({ tier, cores: Math.round((s / wallS) * 100) / 100 }))
    .filter((x) => x.cores > 0)
    .sort((a, b) => b.cores - a.cores)
}

/**
 * Runs a load and says what each tier's hosts used meanwhile, busiest first. The load
 * generator has exited by the second sample (its CPU is gone from /proc): what it
 * reports of its own (`generatorCpuS`) is added to its host's tier.
 */
export async function tiersDuring<T>(
  lab: BenchLab,
  generator: string,
  load: () => Promise<T>,
  generatorCpuS: (result: T) => number,
): Promise<{ result: T; tiers: TierCpu[] }> {
  const roles = new Map<string, string>(lab.plan.hosts.map((h) => [h.name, h.role]))
  const before = await cpuSample(lab)
  const t0 = Date.now()
  const result = await load()
  const wall = (Date.now() - t0) / 1000
  const tiers = tierCpu((h) => roles.get(h), before, await cpuSample(lab), wall)
  const tier = roles.get(generator) ?? generator
  const own = tiers.find((x) => x.tier === tier)
  const extra = generatorCpuS(result) / wall
  if (own) own.cores = Math.round((own.cores + extra) * 100) / 100
  else if (extra > 0) tiers.push({ tier, cores: Math.round(extra * 100) / 100 })
  return { result, tiers: tiers.sort((a, b) => b.cores - a.cores) }
}
