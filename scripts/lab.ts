// npm run lab | lab:down | lab:status | box | net:up | net:down
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { loadPlan, plannedProviders } from '../provision/plan.js'
import { ensureBox, pruneBoxes } from './lib/box.js'
import { ensureLibvirtDaemons } from './lib/libvirt.js'
import { ensureVmBox, pruneVmBoxes } from './lib/vm-box.js'
import { labDown, labUp, prepare, statusText } from './lib/lab.js'
import { networksDown, networksUp } from './lib/network.js'
import { topologyFile } from '../provision/paths.js'
import type { Provider } from '../provision/providers.js'
import fs from 'node:fs'
import path from 'node:path'
import { capture } from './lib/capture.js'
import { graphSvg } from './lib/graph.js'
import { impair } from './lib/impair.js'
import { clearFault, faultHost, HOST_FAULTS, makeFault } from './lib/host-faults.js'
import { boundedNumber, parseLink, UsageError } from './lib/links.js'
import { machineStates } from './lib/vagrant.js'
import { liveState } from './lib/watch.js'
import { requireTools, TEST_REQUIREMENTS, TOOLS, UNIT_REQUIREMENTS } from './lib/system.js'

const log = (m: string) => console.log(m)

await yargs(hideBin(process.argv))
  .scriptName('tsx scripts/lab.ts')
  .command(
    'up',
    'bring the whole lab up: packages, box, networks, vagrant up, provision, status',
    (y) =>
      y
        .option('provision', { type: 'boolean', default: true, describe: 'provision after vagrant up' })
        .example('npm run lab', 'everything, from a fresh machine'),
    async (argv) => {
      const t0 = Date.now()
      const r = await labUp(log, { provision: argv.provision })
      log(
        `\nLab up in ${((Date.now() - t0) / 1000).toFixed(0)} s (${Object.entries(r.seconds)
          .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
          .join(', ')})`,
      )
    },
  )
  .command('down', 'destroy the lab and remove its networks: nothing is left behind', {}, () => labDown(log))
  .command('status', 'hosts, roles, addresses and state', {}, async () => log(await statusText(loadPlan(topologyFile))))
  .command(
    'graph',
    'the topology as an SVG diagram, coloured by live state when the lab runs',
    (y) => y.option('out', { type: 'string', default: 'lab-graph.svg', describe: 'where to write the SVG' }),
    async (argv) => {
      const plan = loadPlan(topologyFile)
      const live = await liveState(plan, await machineStates())
      fs.writeFileSync(argv.out, graphSvg(plan, live))
      log(
        `${path.resolve(argv.out)}: ${plan.hosts.length} hosts on ${plan.networks.length - 1} networks${live ? `, live state from ${live.source}` : ', from topology.yaml (the lab is not running)'}`,
      )
    },
  )
  .command(
    'capture <link>',
    'a bounded capture on a lab link (a network, or host:interface), printed or written as pcap',
    (y) =>
      y
        .positional('link', { type: 'string', describe: 'a network (iot, inet, cloud, mgmt) or host:interface' })
        .option('filter', { type: 'string', describe: 'a tcpdump (BPF) filter, e.g. "esp or udp port 4500"' })
        .option('count', { type: 'number', default: 50, describe: 'stop after this many packets (1 to 100000)' })
        .option('seconds', { type: 'number', default: 10, describe: 'stop after this many seconds (1 to 600)' })
        .option('w', { type: 'string', describe: 'write a pcap file (for Wireshark) instead of printing' })
        .example('npm run lab:capture -- inet --filter esp --count 5', 'five ESP packets on the simulated internet')
        .example(
          'npm run lab:capture -- gw-iot:iot -w /tmp/iot.pcap --seconds 5',
          "five seconds of gw-iot's IoT side, for Wireshark",
        ),
    async (argv) => {
      const plan = loadPlan(topologyFile)
      const link = parseLink(plan, argv.link, { allowManagement: true })
      const o = {
        filter: argv.filter,
        count: boundedNumber(argv.count, 'count', 1, 100_000, { integer: true }),
        seconds: boundedNumber(argv.seconds, 'seconds', 1, 600, { integer: true }),
        write: argv.w,
      }
      if (o.write && o.write !== '-' && !fs.existsSync(path.dirname(path.resolve(o.write))))
        throw new UsageError(`-w ${o.write}: its folder does not exist`)
      await requireTools([TOOLS.tcpdump], (m) => console.error(m))
      const r = await capture(
        plan,
        link,
        o,
        (l) => console.log(l),
        () =>
          console.error(
            `capturing on ${argv.link}: at most ${o.count} packets or ${o.seconds} s${o.filter ? `, filter ${o.filter}` : ''}`,
          ),
      )
      console.error(`${r.where}: ${r.summary || 'done'}${o.write ? `; written to ${o.write}` : ''}`)
    },
  )
  .command(
    'impair <link>',
    'random loss (and, where the kernel has netem, delay) on a lab link; --clear to undo',
    (y) =>
      y
        .positional('link', { type: 'string', describe: 'a network (iot, inet, cloud) or host:interface' })
        .option('loss', { type: 'number', describe: 'percent of packets dropped, 0 to 100 (one decimal)' })
        .option('delay', { type: 'number', describe: 'milliseconds of delay (netem: VMs only here)' })
        .option('clear', { type: 'boolean', default: false, describe: 'remove the impairment' })
        .example('npm run lab:impair -- inet --loss 20', '20 % loss on the simulated internet')
        .example('npm run lab:impair -- inet --clear', 'and back'),
    async (argv) => {
      const plan = loadPlan(topologyFile)
      const link = parseLink(plan, argv.link)
      if (argv.clear && (argv.loss !== undefined || argv.delay !== undefined))
        throw new UsageError('--clear takes no --loss or --delay')
      await impair(
        link,
        {
          clear: argv.clear,
          loss: argv.loss === undefined ? undefined : boundedNumber(argv.loss, 'loss', 0, 100, { decimals: 1 }),
          delayMs:
            argv.delay === undefined ? undefined : boundedNumber(argv.delay, 'delay', 1, 60_000, { integer: true }),
        },
        log,
      )
    },
  )
  .command(
    'fault <host>',
    'a whole host fails: --stop (a power cut), --freeze (it hangs), --isolate (its lab cables pulled, management kept); --clear to undo',
    (y) =>
      y
        .positional('host', { type: 'string', describe: 'a host of the topology' })
        .option('stop', { type: 'boolean', default: false, describe: 'stop it hard: no shutdown, nothing flushed' })
        .option('freeze', { type: 'boolean', default: false, describe: 'pause every process (kernel answers pings)' })
        .option('isolate', { type: 'boolean', default: false, describe: 'set its links to every lab network down' })
        .option('clear', { type: 'boolean', default: false, describe: 'undo: thaw, start, links up' })
        .example('npm run lab:fault -- gw-cloud --stop', 'the hub loses power')
        .example('npm run lab:fault -- gw-cloud --clear', 'and starts again'),
    async (argv) => {
      const plan = loadPlan(topologyFile)
      const host = faultHost(plan, argv.host)
      const asked = [...HOST_FAULTS, 'clear' as const].filter((f) => argv[f])
      if (asked.length !== 1)
        throw new UsageError(
          `give exactly one of --stop, --freeze, --isolate or --clear${asked.length ? ` (not ${asked.map((a) => `--${a}`).join(' and ')})` : ''}`,
        )
      if (asked[0] === 'clear') await clearFault(plan, host, log)
      else await makeFault(plan, host, asked[0], log)
    },
  )
  .command(
    'tools <what>',
    'install what the tests need on this machine (apt, as root), or name it: `unit` for the unit tests, `test` for npm test and test:vm',
    (y) => y.positional('what', { type: 'string', choices: ['unit', 'test'] }),
    async (argv) => {
      // As root (CI, and the README's way) a missing tool is installed or the run stops;
      // elsewhere the command to install it is printed and the checks that need it skip.
      const soft = process.getuid?.() !== 0 && !process.env.LAB_REQUIRED
      await requireTools(argv.what === 'unit' ? UNIT_REQUIREMENTS : TEST_REQUIREMENTS, log, { soft })
    },
  )
  .command(
    'box',
    'build the lxc box (and with --vm the libvirt box) if their inputs changed; drop outdated ones',
    (y) =>
      y.option('vm', { type: 'boolean', default: false, describe: 'the VM box too (a few minutes under emulation)' }),
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
    },
  )
  .command(
    'prepare',
    'make what hosts of a provider need before `vagrant up` (the Vagrantfile runs this)',
    (y) =>
      y.option('provider', {
        type: 'string',
        choices: ['lxc', 'libvirt', 'virtualbox'],
        demandOption: true,
        describe: 'the provider Vagrant is about to use',
      }),
    async (argv) => {
      const plan = loadPlan(topologyFile)
      // What the plan needs too: a mixed lab's lxc hosts share the VMs' management network.
      const planned = Object.values(plannedProviders(plan))
      await prepare([...new Set([argv.provider as Provider, ...planned])], log)
    },
  )
  .command('net-up', "create the lab's bridges", {}, () => networksUp(loadPlan(topologyFile), log))
  .command('net-down', "remove the lab's bridges", {}, () => networksDown(loadPlan(topologyFile), log))
  .demandCommand(1)
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`lab: ${err ? err.message : msg}`)
    if (err && process.env.LAB_VERBOSE) console.error(err.stack)
    process.exit(1)
  })
  .parseAsync()
