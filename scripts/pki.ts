// npm run pki -- status | revoke <gateway> | reissue <gateway>
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { reissue, revoke, status } from '../provision/pki-actions.js'
import { loadTopology } from '../provision/topology.js'
import { repoRoot, stateDir, topologyFile } from './lib/paths.js'

const log = (m: string) => console.log(m)
const opts = { stateDir, repoRoot, log }

await yargs(hideBin(process.argv))
  .scriptName('npm run pki --')
  .command('status', 'the lab CA, each gateway\'s certificate, what is revoked', {}, async () => log(await status(loadTopology(topologyFile), stateDir)))
  .command('revoke <gateway>', 'revoke a gateway\'s certificate: CRL to every gateway, its tunnels torn down',
    (y) => y.positional('gateway', { type: 'string', demandOption: true }).example('npm run pki -- revoke gw-iot', 'gw-iot can no longer authenticate'),
    async (argv) => { await revoke(loadTopology(topologyFile), argv.gateway, opts) })
  .command('reissue <gateway>', 'a new key (made on the gateway) and a new certificate; the tunnel comes back',
    (y) => y.positional('gateway', { type: 'string', demandOption: true }).example('npm run pki -- reissue gw-iot', 'after a revocation'),
    async (argv) => { await reissue(loadTopology(topologyFile), argv.gateway, opts) })
  .demandCommand(1)
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`pki: ${err ? err.message : msg}`)
    process.exit(1)
  })
  .parseAsync()
