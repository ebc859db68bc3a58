// Where the lab keeps things on the machine that runs it. Machine-level caches
// (the box) live outside the clone so a fresh clone (CI) reuses them; the PKI and
// secrets live inside the clone but out of git (.gitignore: /.lab/).
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const boxDir = path.join(repoRoot, 'box')
export const cacheDir = process.env.LAB_CACHE ?? '/var/cache/iotlab'
export const stateDir = path.join(repoRoot, '.lab')
export const defaultTopologyFile = path.join(repoRoot, 'topology.yaml')
/**
 * The topology file the running lab was made from, as `npm run lab` recorded it: a lab
 * brought up with LAB_TOPOLOGY=topology.single.yaml is that lab for every later command
 * (provision, status, the tests, lab:down) without being told again. `lab:down` at the
 * default topology failed on it ("The machine with the name 'database' was not found
 * configured for this Vagrant environment", 7 Dec 2026).
 */
export const topologyRecord = path.join(stateDir, 'topology-in-use')

/** LAB_TOPOLOGY when set; else the running lab's recorded one; else topology.yaml. */
export function topologyIn(env: NodeJS.ProcessEnv, record: string, fallback: string): string {
  if (env.LAB_TOPOLOGY) return env.LAB_TOPOLOGY
  let recorded = ''
  try {
    recorded = fs.readFileSync(record, 'utf8').trim()
  } catch {
    return fallback
  }
  if (!recorded) return fallback
  if (!fs.existsSync(recorded))
    throw new Error(
      `the running lab was brought up with ${recorded}, which is gone: put it back, or name another with LAB_TOPOLOGY (${record} records it)`,
    )
  return recorded
}

export const topologyFile = topologyIn(process.env, topologyRecord, defaultTopologyFile)

/** Record which topology the lab is being made from (none for the default). */
export function recordTopology(file: string, record = topologyRecord, fallback = defaultTopologyFile): void {
  const abs = path.resolve(file)
  if (abs === fallback) fs.rmSync(record, { force: true })
  else {
    fs.mkdirSync(path.dirname(record), { recursive: true })
    fs.writeFileSync(record, `${abs}\n`)
  }
}

/** The lab is gone: later commands read topology.yaml (or LAB_TOPOLOGY) again. */
export function forgetTopology(record = topologyRecord): void {
  fs.rmSync(record, { force: true })
}
