// Prints the resolved topology as JSON, for the Vagrantfile (Ruby), or validates it.
//   tsx scripts/topology.ts json        resolved topology + the lxc box name
//   tsx scripts/topology.ts check       exit 0 if valid, else the problems on stderr
import { loadTopology, TopologyError } from '../provision/topology.js'
import { boxName } from './lib/box.js'
import { repoRoot, topologyFile } from './lib/paths.js'

try {
  const topology = loadTopology(topologyFile)
  if (process.argv[2] === 'check') {
    console.log(`${topologyFile}: ${topology.hosts.length} hosts on ${topology.networks.length} networks, valid`)
  } else {
    process.stdout.write(JSON.stringify({ ...topology, box: boxName(), repoRoot }) + '\n')
  }
} catch (e) {
  console.error(e instanceof TopologyError ? e.message : e)
  process.exit(1)
}
