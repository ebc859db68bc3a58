// npm run test:mutation: StrykerJS over the logic that decides correctness without a
// lab (docs/mutation.md has the scores and every survivor explained). Incremental: the
// results are kept in stryker-incremental.json (committed), so a run re-tests only the
// mutants of what changed since.
import fs from 'node:fs'

/**
 * The lines of one exported function (its signature to the closing brace at column 0):
 * the config renderers live in role modules whose other steps only run on a host.
 */
function fn(file, name) {
  const lines = fs.readFileSync(file, 'utf8').split('\n')
  const start = lines.findIndex((l) => new RegExp(`^export (async )?function ${name}\\b`).test(l))
  if (start < 0) throw new Error(`stryker.config.mjs: no exported function ${name} in ${file}`)
  const end = lines.findIndex((l, i) => i > start && l === '}')
  return `${file}:${start + 1}-${end + 1}`
}

export default {
  testRunner: 'tap',
  plugins: ['@stryker-mutator/tap-runner'],
  tap: {
    testFiles: [
      'test/unit/client.ts',
      'test/unit/ingest.ts',
      'test/unit/batcher.ts',
      'test/unit/topology.ts',
      'test/unit/template.ts',
      'test/unit/telemetry-roles.ts',
      'test/unit/vpn.ts',
      'test/unit/swanctl.ts',
      'test/unit/monitoring.ts',
      'test/unit/operator.ts',
      'test/unit/inventory.ts',
      'test/unit/db.ts',
      'test/unit/rendered.ts',
      'test/unit/reading.ts',
      'test/unit/ipv4.ts',
      'test/unit/sender.ts',
      'test/unit/ingest-contract.ts',
      'test/unit/topology-refusals.ts',
      'test/unit/outbox-edges.ts',
    ],
    nodeArgs: ['--import', 'tsx', '-r', '{{hookFile}}', '{{testFile}}'],
    forceBail: true,
  },
  mutate: [
    'services/lib/reading.ts',
    'services/lib/swanctl.ts',
    'services/client/outbox.ts',
    'services/client/sender.ts',
    'services/ingest/server.ts',
    'provision/topology.ts',
    'provision/lib/*.ts',
    'provision/template.ts',
    // The config renderers (their output is also pinned by the golden files).
    fn('provision/roles/proxy.ts', 'nginxConf'),
    fn('provision/roles/common.ts', 'nftablesConf'),
    fn('provision/roles/db.ts', 'pgHbaConf'),
    fn('provision/roles/gateway.ts', 'swanctlVars'),
    fn('provision/roles/monitor.ts', 'prometheusConfig'),
  ],
  ignorePatterns: ['.vagrant', '.lab', 'bench', 'docs', '.tap', 'test/artifacts', 'reports', '.stryker-tmp'],
  // The templates are not code: no type checks to disable in them.
  disableTypeChecks: '{services,provision,scripts,test}/**/*.ts',
  coverageAnalysis: 'perTest',
  incremental: true,
  incrementalFile: 'stryker-incremental.json',
  concurrency: 2,
  timeoutMS: 20000,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  thresholds: { high: 90, low: 80, break: 80 },
  cleanTempDir: 'always',
}
