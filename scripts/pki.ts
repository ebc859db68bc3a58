// npm run pki -- status | revoke <host> | reissue <host>: a gateway's IKE certificate, or a
// cloud service's TLS certificate (proxy, backend, database)
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { reissue, revoke, status } from '../provision/pki-actions.js'
import { loadPlan } from '../provision/plan.js'
import { repoRoot, stateDir, topologyFile } from '../provision/paths.js'

const log = (m: string) => console.log(m)
const opts = { stateDir, repoRoot, log }

await yargs(hideBin(process.argv))
  .scriptName('npm run pki --')
  .command('status', "both CAs (IKE, services), each host's certificate, what is revoked", {}, async () =>
    log(await status(loadPlan(topologyFile), stateDir)),
  )
  .command(
    'revoke <host>',
    "revoke a host's certificate: the CRL to every host of its CA, reloaded, the revoked one cut off now",
    (y) =>
      y
        .positional('host', { type: 'string', demandOption: true })
        .example('npm run pki -- revoke gw-iot', 'gw-iot can no longer authenticate its tunnel')
        .example(
          'npm run pki -- revoke backend-1',
          'nginx and PostgreSQL refuse backend-1; backend-2 takes its readings',
        ),
    async (argv) => {
      await revoke(loadPlan(topologyFile), argv.host, opts)
    },
  )
  .command(
    'reissue <host>',
    'a new key (made on the host) and a new certificate; the tunnel, or the service, is back',
    (y) =>
      y
        .positional('host', { type: 'string', demandOption: true })
        .example('npm run pki -- reissue backend-1', 'after a revocation: a reload, no reading lost'),
    async (argv) => {
      await reissue(loadPlan(topologyFile), argv.host, opts)
    },
  )
  .demandCommand(1)
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`pki: ${err ? err.message : msg}`)
    process.exit(1)
  })
  .parseAsync()
