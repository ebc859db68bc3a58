// Where the time goes: CPU seconds each process used on each lab host during a
// measurement (from /proc before and after), so the report can say which layer costs
// most per reading: charon's userspace ESP, nginx, node, PostgreSQL...
import type { BenchLab } from './lab.js'

export type CpuSample = Map<string, number>

export async function cpuSample(lab: BenchLab): Promise<CpuSample> {
  const out = new Map<string, number>()
  await Promise.all(
    lab.plan.hosts.map(async (h) => {
      // utime + stime of every process, in clock ticks (1/100 s): finer than ps.
      const r = await lab.sh(h.name, 'cat /proc/[0-9]*/stat 2>/dev/null')
      for (const line of r.stdout.trim().split('\n')) {
        const m = /^\d+ \((.*)\) (.*)$/.exec(line)
        if (!m) continue
        const f = m[2].split(' ')
        const key = `${h.name} ${m[1]}`
        out.set(key, (out.get(key) ?? 0) + (Number(f[11]) + Number(f[12])) / 100)
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
