// npm run lab | lab:down | lab:status | box | net:up | net:down
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { loadTopology } from '../provision/topology.js'
import { ensureBox, pruneBoxes } from './lib/box.js'
import { labDown, labUp, statusText } from './lib/lab.js'
import { networksDown, networksUp } from './lib/network.js'
import { topologyFile } from './lib/paths.js'

const log = (m: string) => console.log(m)

await yargs(hideBin(process.argv))
  .scriptName('tsx scripts/lab.ts')
  .command('up', 'bring the whole lab up: packages, box, networks, vagrant up, provision, status',
    (y) => y.option('provision', { type: 'boolean', default: true, describe: 'provision after vagrant up' })
      .example('npm run lab', 'everything, from a fresh machine'),
    async (argv) => {
      const t0 = Date.now()
      const r = await labUp(log, { provision: argv.provision })
      log(`\nLab up in ${((Date.now() - t0) / 1000).toFixed(0)} s (${Object.entries(r.seconds).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ')})`)
    })
  .command('down', 'destroy the lab and remove its networks: nothing is left behind', {}, () => labDown(log))
  .command('status', 'hosts, roles, addresses and state', {}, async () => log(await statusText(loadTopology(topologyFile))))
  .command('box', 'build the lxc box if its package list changed, and drop outdated ones', {}, async () => {
    const r = await ensureBox(log)
    await pruneBoxes(log)
    log(`${r.name}: ${r.built ? `built in ${r.seconds.toFixed(0)} s` : 'up to date'}`)
  })
  .command('net-up', "create the lab's bridges (lxc)", {}, () => networksUp(loadTopology(topologyFile), log))
  .command('net-down', "remove the lab's bridges (lxc)", {}, () => networksDown(loadTopology(topologyFile), log))
  .demandCommand(1)
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`lab: ${err ? err.message : msg}`)
    if (err && process.env.LAB_VERBOSE) console.error(err.stack)
    process.exit(1)
  })
  .parseAsync()
