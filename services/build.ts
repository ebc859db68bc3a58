// Each service is bundled into one file for the hosts' Node.js (Debian 12: Node 18):
// the lab has no network, so nothing is installed there. The provisioner builds in
// memory and ships the file only when its content changed.
import { build } from 'esbuild'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const SERVICES = {
  ingest: 'ingest/main.ts',
  client: 'client/main.ts',
  loadgen: 'client/loadgen.ts',
  'outbox-bench': 'client/outbox-bench.ts',
  'outbox-fill': 'client/outbox-fill.ts',
  'ipsec-metrics': 'gateway/ipsec-metrics.ts',
} as const
export type ServiceName = keyof typeof SERVICES

const here = path.dirname(fileURLToPath(import.meta.url))
const cache = new Map<ServiceName, Promise<string>>()

export function bundle(name: ServiceName): Promise<string> {
  let p = cache.get(name)
  if (!p) {
    p = build({
      entryPoints: [path.join(here, SERVICES[name])],
      absWorkingDir: path.dirname(here),
      bundle: true,
      platform: 'node',
      target: 'node18',
      format: 'cjs',
      write: false,
      // pg's optional native binding is never used.
      external: ['pg-native'],
      banner: {
        js: `// lab-${name}: bundled from services/${SERVICES[name]} by the lab provisioner; edits are overwritten.`,
      },
      logLevel: 'silent',
    }).then((r) => r.outputFiles[0].text)
    cache.set(name, p)
  }
  return p
}
