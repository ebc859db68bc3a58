// Adding an IoT site is a change of data: a copy of the topology with a second site
// (its LAN, its gateway, a device), the same Vagrantfile and provisioner, and the hub
// gets a second tunnel with the new gateway's own identity and certificate. The site
// is removed afterwards, and the hub put back as it was.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { parse, stringify } from 'yaml'
import { loadPlan } from '../../provision/plan.js'
import { networksUp } from '../../scripts/lib/network.js'
import { repoRoot, topologyFile } from '../../provision/paths.js'
import { installed, listSas, waitForTunnel } from '../lib/ipsec.js'
import { labCli, openLab, waitFor } from '../lib/lab.js'

const run = promisify(execFile)
// The second site is added as lxc containers beside the lab (on an all-VM lab that
// would take minutes): this file is selected where the lab has containers.
const lab = await openLab(t, { requires: { containers: true } })
if (lab) {
  const [first] = lab.plan.vpn!.tunnels
  const raw = parse(fs.readFileSync(topologyFile, 'utf8'))
  // Free addresses for the new site, derived from the default plan.
  raw.networks.iot2 = { kind: 'lan', cidr: '10.10.2.0/24', gateway: 'gw-iot2' }
  raw.hosts['gw-iot2'] = {
    role: 'gateway',
    interfaces: { mgmt: '172.31.250.13', iot2: '10.10.2.1', inet: '198.51.100.13' },
  }
  raw.hosts['iot-client2'] = { role: 'iot-client', interfaces: { mgmt: '172.31.250.14', iot2: '10.10.2.10' } }
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'two-sites-')), 'topology.yaml')
  fs.writeFileSync(file, stringify(raw))
  const two = loadPlan(file)
  const env = { ...process.env, LAB_TOPOLOGY: file }
  const added = ['gw-iot2', 'iot-client2']

  t.teardown(async () => {
    await run('vagrant', ['destroy', '-f', ...added], { cwd: repoRoot, env }).catch(() => {})
    await run('ip', ['link', 'delete', two.networks.find((n) => n.name === 'iot2')!.bridge]).catch(() => {})
    await labCli('provision/cli.ts') // every host as the real topology says
    await waitForTunnel(lab, first)
  })

  t.test('a second IoT site, added as data, gets its own tunnel to the hub', async (t) => {
    await networksUp(two, () => {})
    await run('vagrant', ['up', '--provider=lxc', ...added], { cwd: repoRoot, env, maxBuffer: 64 << 20 })
    // Provision everything from the new data: the hub's second tunnel, the new hosts,
    // and the cloud hosts' routes back to the new site.
    const p = await labCli('provision/cli.ts', ['--json'], { LAB_TOPOLOGY: file })
    const summary = JSON.parse(p.stdout).summary
    t.same(
      [summary.hosts, summary.failed, summary.unreachable],
      [two.hosts.length, 0, 0],
      'every host, old and new, is provisioned',
    )

    // The new site initiates by itself (its keeper); watch the hub until it is up.
    await waitFor(
      `the new tunnel gw-iot2 installed on the hub ${first.hub}`,
      async () => installed(await listSas(lab, first.hub, 'gw-iot2')),
      30_000,
      300,
    )
    const hubSas = await listSas(lab, first.hub)
    const names = hubSas
      .filter((s) => s.state === 'ESTABLISHED')
      .map((s) => `${s.name} ${s.fields['remote-id']}`)
      .sort()
    t.same(
      names,
      [`${first.name} ${first.site}.${lab.plan.name}`, `gw-iot2 gw-iot2.${lab.plan.name}`],
      "the hub holds both tunnels, each with its site's identity",
    )
    const child = hubSas.find((s) => s.name === 'gw-iot2')!.children[0]
    t.match(child.fields, { state: 'INSTALLED', 'encr-alg': 'CHACHA20_POLY1305', 'remote-ts': '[10.10.2.0/24]' })

    const ssh = (host: string, cmd: string) =>
      run('vagrant', ['ssh', host, '-c', cmd], { cwd: repoRoot, env }).then(
        () => 0,
        (e) => (e as { code: number }).code ?? 1,
      )
    t.equal(
      await ssh('iot-client2', 'ping -c 2 -i 0.2 -W 1 10.20.0.10'),
      0,
      "the new site's device reaches the proxy through its tunnel",
    )
    t.not(
      await ssh('iot-client2', 'ping -c 2 -i 0.2 -W 1 10.10.1.10'),
      0,
      'but not the other site: sites are joined to the cloud, not to each other',
    )
    t.equal(
      (await lab.sh(first.site, 'ping -c 1 -W 1 10.10.2.1')).code === 0,
      false,
      'nor can the first site reach the new one',
    )
  })
}
