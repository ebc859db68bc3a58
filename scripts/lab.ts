// npm run lab | lab:down | lab:status | box | net:up | net:down
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { loadTopology } from '../provision/topology.js'
import { ensureBox, pruneBoxes } from './lib/box.js'
import { ensureLibvirtDaemons } from './lib/libvirt.js'
import { ensureVmBox, pruneVmBoxes } from './lib/vm-box.js'
import { labDown, labUp, prepare, statusText } from './lib/lab.js'
import { networksDown, networksUp } from './lib/network.js'
import { topologyFile } from './lib/paths.js'
import { planProviders, type Provider } from './lib/providers.js'

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
  .command('box', 'build the lxc box (and with --vm the libvirt box) if their inputs changed; drop outdated ones',
    (y) => y.option('vm', { type: 'boolean', default: false, describe: 'the VM box too (a few minutes under emulation)' }),
    async (argv) => {
      const r = await ensureBox(log)
      await pruneBoxes(log)
      log(`${r.name}: ${r.built ? `built in ${r.seconds.toFixed(0)} s` : 'up to date'}`)
      if (argv.vm) {
        const v = await ensureVmBox(log)
        // vagrant-libvirt removes a box's volume through libvirtd: it must answer.
        await ensureLibvirtDaemons(log)
        await pruneVmBoxes(log)
        log(`${v.name}: ${v.built ? `built in ${v.seconds.toFixed(0)} s` : 'up to date'}`)
      }
    })
  .command('prepare', 'make what hosts of a provider need before `vagrant up` (the Vagrantfile runs this)',
    (y) => y.option('provider', { type: 'string', choices: ['lxc', 'libvirt', 'virtualbox'], demandOption: true, describe: 'the provider Vagrant is about to use' }),
    async (argv) => {
      const topology = loadTopology(topologyFile)
      // What the plan needs too: a mixed lab's lxc hosts share the VMs' management network.
      const planned = Object.values(planProviders(topology).providers)
      await prepare([...new Set([argv.provider as Provider, ...planned])], log)
    })
  .command('net-up', "create the lab's bridges", {}, () => networksUp(loadTopology(topologyFile), log))
  .command('net-down', "remove the lab's bridges", {}, () => networksDown(loadTopology(topologyFile), log))
  .demandCommand(1)
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`lab: ${err ? err.message : msg}`)
    if (err && process.env.LAB_VERBOSE) console.error(err.stack)
    process.exit(1)
  })
  .parseAsync()
