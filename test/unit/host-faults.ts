// The host-fault command's own logic, without a lab: the state words of every provider
// read as one condition, the machine a fault is made on found in Vagrant's state (and
// refused with what to do when it is not there), a wrong request named, a greeting
// told from a silent listener, and the plan's MACs, which keep a restarted host's
// peers right, unique and fixed by the address.
import net from 'node:net'
import t from 'tap'
import { loadPlan, macFor } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'
import { condition, faultHost, sshBanner } from '../../scripts/lib/host-faults.js'
import { UsageError } from '../../scripts/lib/links.js'
import { machineOf } from '../../scripts/lib/providers.js'

const plan = loadPlan(topologyFile)

t.test("each provider's state words read as one condition", async (t) => {
  t.equal(condition('running'), 'running')
  for (const s of ['frozen', 'paused']) t.equal(condition(s), 'frozen', `${s} (lxc; libvirt and VirtualBox)`)
  for (const s of ['stopped', 'shutoff', 'poweroff', 'aborted', 'saved']) t.equal(condition(s), 'stopped', s)
  for (const s of [undefined, 'not_created', 'shutdown', 'crashed', ''])
    t.equal(condition(s), 'other', `${s}: neither (no fault is made or undone on it)`)
})

t.test('the host is named, and one of the topology', async (t) => {
  t.equal(faultHost(plan, 'gw-cloud').name, 'gw-cloud')
  t.throws(() => faultHost(plan, undefined), { message: /name the host: one of iot-client, gw-iot/ })
  t.throws(() => faultHost(plan, 'gw-clod'), new UsageError('no host "gw-clod" in the topology'))
  t.throws(() => faultHost(plan, 'gw-clod'), { message: /\(iot-client, .*gw-cloud.*\)/ }, 'the hosts are listed')
})

t.test("a fault is made on the machine Vagrant's state records, one per host", async (t) => {
  const dir = t.testdir({
    '.vagrant': {
      machines: {
        'gw-cloud': { lxc: { id: 'iotlab-gw-cloud' } },
        proxy: { lxc: { id: 'iotlab-proxy' }, libvirt: { id: 'uuid-1' } },
      },
    },
  })
  const found = machineOf('gw-cloud', dir)
  t.same(found.machine, { host: 'gw-cloud', provider: 'lxc', id: 'iotlab-gw-cloud' })
  t.equal(found.ops.name, 'lxc', "through the lxc provider's operations")
  t.throws(() => machineOf('database', dir), { message: /database has no machine in this clone's Vagrant state/ })
  t.throws(() => machineOf('proxy', dir), { message: /proxy has machines of lxc and libvirt: npm run lab remakes it/ })
})

t.test('an SSH greeting is told from a listener that says nothing, and from no listener', async (t) => {
  const servers: net.Server[] = []
  const listen = async (onConnect: (s: net.Socket) => void) => {
    const server = net.createServer(onConnect)
    servers.push(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    return (server.address() as net.AddressInfo).port
  }
  t.teardown(() => servers.forEach((s) => s.close()))
  const held: net.Socket[] = []
  t.teardown(() => held.forEach((s) => s.destroy()))
  const greeting = await listen((s) => s.end('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n'))
  const silent = await listen((s) => held.push(s)) // accepts, as a frozen host's kernel does
  const closed = await listen(() => {})
  servers[2].close()
  t.equal(await sshBanner('127.0.0.1', 2000, greeting), 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3')
  const t0 = Date.now()
  t.equal(await sshBanner('127.0.0.1', 300, silent), undefined, 'accepted, never greeted: none')
  t.ok(Date.now() - t0 >= 290, 'after the timeout it was given')
  t.equal(await sshBanner('127.0.0.1', 2000, closed), undefined, 'refused: none')
})

t.test("the plan's MACs: fixed by the address, locally administered, unique in the lab", async (t) => {
  t.equal(macFor('10.20.0.22'), '02:1a:0a:14:00:16')
  t.equal(macFor('172.31.250.1'), '02:1a:ac:1f:fa:01')
  const all = plan.hosts.flatMap((h) => h.interfaces.map((i) => h.macs[i.network]))
  t.equal(all.length, plan.hosts.flatMap((h) => h.interfaces).length, 'one per interface')
  t.equal(new Set(all).size, all.length, 'no two alike')
  for (const mac of all) t.match(mac, /^02:1a(:[0-9a-f]{2}){4}$/, `${mac}: unicast, locally administered`)
})
