// A part of the benchmark that needs a bigger lab (more backends, a site farm) adds it
// as data, as a user would: a copy of the topology with the hosts added, `vagrant up`
// of those, a provision with the copy; and puts the lab back after, even when the
// measurement fails midway: provisioned with its own topology first (so nothing still
// points at a host about to go), then the added hosts destroyed.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { stringify } from 'yaml'
import { loadPlan, type Plan } from '../../provision/plan.js'
import { formatAddress, isHostAddress, parseAddress, parseCidr } from '../../provision/lib/ipv4.js'
import { repoRoot } from '../../provision/paths.js'
import { openBenchLab, type BenchLab } from './lab.js'

const run = promisify(execFile)

export type RawTopology = {
  hosts: Record<string, { role: string; interfaces: Record<string, string>; cpus?: number }>
  [key: string]: unknown
}

/** Every IPv4 address the plan uses anywhere (hosts, groups, old servers). */
export const usedAddresses = (plan: Plan) => new Set(JSON.stringify(plan).match(/\b\d{1,3}(\.\d{1,3}){3}\b/g) ?? [])

/**
 * The next host address of a network after `from` (or its highest, going down, when
 * `from` is undefined) that `used` does not hold, for the host named `host`; it is
 * added to `used`.
 */
export function freeAddress(plan: Plan, network: string, host: string, used: Set<string>, from?: number): string {
  const net = plan.networks.find((n) => n.name === network)
  if (!net) throw new Error(`the topology has no network ${network}`)
  const cidr = parseCidr(net.cidr)!
  const step = from === undefined ? -1 : 1
  let a = from === undefined ? parseAddress(net.broadcast)! - 1 : from + 1
  while (used.has(formatAddress(a)) && isHostAddress(cidr, a)) a += step
  if (!isHostAddress(cidr, a)) throw new Error(`network ${network} (${net.cidr}) has no free address for ${host}`)
  used.add(formatAddress(a))
  return formatAddress(a)
}

/**
 * Provision the lab with the topology in `env` (LAB_TOPOLOGY), or only the hosts named,
 * as a subprocess; throws if any host failed.
 */
export async function provisionWith(env: NodeJS.ProcessEnv, what: string, only: string[] = []) {
  const tsx = path.join(repoRoot, 'node_modules', '.bin', 'tsx')
  const p = await run(tsx, ['provision/cli.ts', '--json', ...only], { cwd: repoRoot, env, maxBuffer: 64 << 20 }).catch(
    (err: { stdout?: string; message: string }) => ({ stdout: err.stdout ?? '', failed: err.message }),
  )
  const summary = (() => {
    try {
      return (JSON.parse(p.stdout) as { summary: { failed: number; unreachable: number } }).summary
    } catch {
      return undefined
    }
  })()
  if (!summary || summary.failed + summary.unreachable)
    throw new Error(`provisioning ${what} failed: run \`npm run provision\` to see why`)
}

/**
 * Run `measure` on the lab grown to `raw` (a copy of the topology with `added` hosts),
 * and put the lab back whatever happens. `before` runs once the added hosts are up and
 * before the provision (a cgroup cap, say); `after` once the lab is back. `touches`:
 * the lab's own hosts whose configuration the added ones change, when it is known to be
 * only those (the rest are not provisioned, either way); all of them by default.
 */
export async function withTopologyCopy<T>(
  raw: RawTopology,
  added: string[],
  what: string,
  measure: (plan: Plan, lab: BenchLab) => Promise<T>,
  log: (m: string) => void,
  hooks: { before?: () => Promise<void>; after?: () => Promise<void>; touches?: string[] } = {},
): Promise<T> {
  const touches = hooks.touches ?? []
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-topology-')), 'topology.yaml')
  fs.writeFileSync(file, stringify(raw))
  const bigger = loadPlan(file)
  const env = { ...process.env, LAB_TOPOLOGY: file }
  try {
    await run('vagrant', ['up', '--provider=lxc', ...added], { cwd: repoRoot, env, maxBuffer: 64 << 20 })
    await hooks.before?.()
    await provisionWith(env, `the lab with ${what}`, touches.length ? [...added, ...touches] : [])
    const lab = await openBenchLab(bigger)
    try {
      return await measure(bigger, lab)
    } finally {
      await lab.close()
    }
  } finally {
    await provisionWith(process.env, 'the lab with its own topology', touches).catch((e: Error) =>
      log(`  ${e.message}`),
    )
    await run('vagrant', ['destroy', '-f', ...added], { cwd: repoRoot, env }).catch((e: Error) =>
      log(`  vagrant destroy ${added.join(' ')}: ${e.message}`),
    )
    await hooks.after?.().catch((e: Error) => log(`  ${e.message}`))
    fs.rmSync(path.dirname(file), { recursive: true, force: true })
  }
}
