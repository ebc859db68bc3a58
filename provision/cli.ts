// npm run provision -- [hosts..] [--dry-run] [--verbose] [--json]
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { repoRoot, stateDir, topologyFile } from './paths.js'
import { lineReporter, recapText, summarize } from './report.js'
import { provision } from './run.js'
import { loadPlan } from './plan.js'

await yargs(hideBin(process.argv))
  .scriptName('npm run provision --')
  .command(
    '$0 [hosts..]',
    'configure every lab host (or the named ones) over SSH, idempotently',
    (y) =>
      y
        .positional('hosts', {
          type: 'string',
          array: true,
          describe: 'only these hosts (default: all in topology.yaml)',
        })
        .option('dry-run', {
          alias: 'n',
          type: 'boolean',
          default: false,
          describe: 'show what would change; change nothing',
        })
        .option('verbose', {
          alias: 'v',
          type: 'boolean',
          default: false,
          describe: 'list unchanged steps too, and stacks on errors',
        })
        .option('json', { type: 'boolean', default: false, describe: 'print the recap as JSON' })
        .example('npm run provision', 'provision every host')
        .example('npm run provision -- --dry-run', 'what would change, without changing it')
        .example('npm run provision -- gw-iot gw-cloud', 'only the two gateways'),
    async (argv) => {
      const plan = loadPlan(topologyFile)
      const recaps = await provision({
        plan,
        only: argv.hosts,
        dryRun: argv.dryRun,
        repoRoot,
        stateDir,
        report: argv.json ? undefined : lineReporter(argv.dryRun, argv.verbose),
      })
      if (argv.json) console.log(JSON.stringify({ summary: summarize(recaps), hosts: recaps }, null, 2))
      else console.log(recapText(recaps, argv.dryRun))
      const s = summarize(recaps)
      if (s.failed + s.unreachable > 0) process.exitCode = 2
    },
  )
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`provision: ${err ? err.message : msg}`)
    if (err && process.argv.includes('--verbose')) console.error(err.stack)
    else if (err) console.error('(pass --verbose for the stack)')
    process.exit(1)
  })
  .parseAsync()
