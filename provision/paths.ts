// Where the lab keeps things on the machine that runs it. Machine-level caches
// (the box) live outside the clone so a fresh clone (CI) reuses them; the PKI and
// secrets live inside the clone but out of git (.gitignore: /.lab/).
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const topologyFile = process.env.LAB_TOPOLOGY ?? path.join(repoRoot, 'topology.yaml')
export const boxDir = path.join(repoRoot, 'box')
export const cacheDir = process.env.LAB_CACHE ?? '/var/cache/iotlab'
export const stateDir = path.join(repoRoot, '.lab')
