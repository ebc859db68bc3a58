// A container's share of this machine: the topology's memory and cpus, where it sets
// them, as LXC's cgroup keys (the Vagrantfile writes them with lxc.customize), and
// read back from the running container's cgroup. A container the topology gives no
// limit shares this machine's cores and memory, as the lab's containers always did.
// Which keys depends on this machine's cgroup hierarchy: cgroup v1 (ours: the cpu and
// memory controllers mounted each on its own) or the unified v2 (a stock Debian 12).
import fs from 'node:fs'
import { $ } from 'zx'
import type { Host } from '../../provision/plan.js'

export type CgroupVersion = 'v1' | 'v2'

/** The CFS period the quota is a share of: 100 ms, the kernel's default. */
export const CPU_PERIOD_US = 100_000

/** v2 where the unified hierarchy has its controllers at the root, else v1. */
export function cgroupVersion(root = '/sys/fs/cgroup'): CgroupVersion {
  return fs.existsSync(`${root}/cgroup.controllers`) ? 'v2' : 'v1'
}

/**
 * The lxc.* keys (without "lxc.") that give a container the topology's limits, and
 * lift them where it sets none. Always both: vagrant-lxc appends the keys to the
 * container's config on each start and the last one counts, so a limit taken out of
 * the topology must be written as none, not left out.
 */
export function lxcLimitKeys(limits: Host['limits'], version: CgroupVersion): [string, string][] {
  const quota = limits.cpus === undefined ? undefined : String(Math.round(limits.cpus * CPU_PERIOD_US))
  const memory = limits.memory === undefined ? undefined : `${limits.memory}M`
  if (version === 'v2')
    return [
      ['cgroup2.cpu.max', `${quota ?? 'max'} ${CPU_PERIOD_US}`],
      ['cgroup2.memory.max', memory ?? 'max'],
    ]
  return [
    ['cgroup.cpu.cfs_period_us', String(CPU_PERIOD_US)],
    ['cgroup.cpu.cfs_quota_us', quota ?? '-1'],
    ['cgroup.memory.limit_in_bytes', memory ?? '-1'],
  ]
}

/** What a cgroup's files say, as the topology would have said it (undefined: no limit). */
export function parseLimits(
  version: CgroupVersion,
  files: { quota?: string; period?: string; cpuMax?: string; memory: string },
): Host['limits'] {
  const out: Host['limits'] = {}
  let quota: number | undefined
  let period: number | undefined
  if (version === 'v2') {
    const [q, p] = (files.cpuMax ?? '').trim().split(/\s+/)
    if (q !== 'max') [quota, period] = [Number(q), Number(p)]
  } else if (Number(files.quota) >= 0) [quota, period] = [Number(files.quota), Number(files.period)]
  if (quota !== undefined) {
    if (!Number.isFinite(quota) || !Number.isFinite(period) || !period)
      throw new Error(`a CPU limit that is no number: ${JSON.stringify(files)}`)
    out.cpus = Math.round((quota / period) * 100) / 100
  }
  const mem = files.memory.trim()
  // v1 says "no limit" with the page counter's maximum (9223372036854771712), v2 with "max".
  if (mem !== 'max' && !/^\d+$/.test(mem)) throw new Error(`a memory limit that is no number: ${mem}`)
  if (mem !== 'max' && Number(mem) < 2 ** 62) out.memory = Number(mem) / 2 ** 20
  return out
}

/** One of a running container's cgroup files (the key without "cgroup."), read, or written with a value. */
async function lxcCgroup(name: string, file: string, value?: string): Promise<string> {
  // "--": a value of -1 (no limit) is no option.
  const args = value === undefined ? [file] : [file, value]
  const r = await $({ quiet: true, nothrow: true, timeout: '15s' })`lxc-cgroup -n ${name} -- ${args}`
  if (r.exitCode !== 0)
    throw new Error(`lxc-cgroup -n ${name} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.exitCode}`}`)
  return r.stdout.trim()
}

/** A running container's limits, read from its cgroup on this machine (lxc-cgroup). */
export async function containerLimits(name: string, version = cgroupVersion()): Promise<Host['limits']> {
  const read = (file: string) => lxcCgroup(name, file)
  return version === 'v2'
    ? parseLimits(version, { cpuMax: await read('cpu.max'), memory: await read('memory.max') })
    : parseLimits(version, {
        quota: await read('cpu.cfs_quota_us'),
        period: await read('cpu.cfs_period_us'),
        memory: await read('memory.limit_in_bytes'),
      })
}

const LIMIT_LINE = /^lxc\.cgroup2?\.(?:cpu\.(?:cfs_period_us|cfs_quota_us|max)|memory\.(?:limit_in_bytes|max))\s*=.*$/

/**
 * A container's LXC config with its limit keys made these: as it is where its limit
 * lines already say them (in any spacing), else without them and with these at the end.
 */
export function withLimitKeys(config: string, keys: [string, string][]): string {
  const lines = config.split('\n')
  const said = lines
    .filter((l) => LIMIT_LINE.test(l.trim()))
    .map((l) => l.split('=').map((x) => x.trim()))
    .map(([k, ...v]) => `${k}=${v.join('=')}`)
  if (said.join('\n') === keys.map(([k, v]) => `lxc.${k}=${v}`).join('\n')) return config
  const kept = lines.filter((l) => !LIMIT_LINE.test(l.trim()))
  while (kept.length && kept[kept.length - 1] === '') kept.pop()
  // Inside vagrant-lxc's block, where its customizations are, when there is one.
  const end = kept.indexOf('# VAGRANT-END')
  const at = end >= 0 ? end : kept.length
  return [...kept.slice(0, at), ...keys.map(([k, v]) => `lxc.${k}=${v}`), ...kept.slice(at), ''].join('\n')
}

/**
 * Gives a running container the topology's limits now, where its cgroup says other
 * ones, and writes them into its LXC config for its next start (lxc-start, as the
 * faults use, reads the keys it was made with): what it changed, nothing when both
 * already held them.
 */
export async function applyLimits(
  name: string,
  limits: Host['limits'],
  version = cgroupVersion(),
  lxcPath = '/var/lib/lxc',
): Promise<string[]> {
  const keys = lxcLimitKeys(limits, version)
  const changed: string[] = []
  const file = `${lxcPath}/${name}/config`
  const config = fs.readFileSync(file, 'utf8')
  const wanted = withLimitKeys(config, keys)
  if (wanted !== config) {
    fs.writeFileSync(`${file}.lab-new`, wanted)
    fs.renameSync(`${file}.lab-new`, file)
    changed.push('its config')
  }
  const now = await containerLimits(name, version)
  if (now.cpus === limits.cpus && now.memory === limits.memory) return changed
  const files = keys.map(([k, v]) => [k.replace(/^cgroup2?\./, ''), v] as const)
  for (const [file, value] of files) await lxcCgroup(name, file, value)
  changed.push(`its cgroup (${files.map(([f, v]) => `${f}=${v}`).join(', ')})`)
  return changed
}
