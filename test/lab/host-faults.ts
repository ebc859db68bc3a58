// A whole host fails, made by its provider through the operator's own command
// (npm run lab:fault, scripts/lib/host-faults.ts), and each undo puts it back: judged
// from outside the host (its provider's state, its SSH server's greeting on
// management, a ping from a peer on its LAN) and, once it is back, from inside (its
// units, its MACs). The victim is the last backend: the proxy has another, so the
// rest of the lab goes on. Every fault is undone in teardown, even when a check fails.
import t from 'tap'
import { vagrantInventory } from '../../provision/inventory.js'
import { repoRoot } from '../../provision/paths.js'
import { SshHost, type RemoteHost } from '../../provision/ssh.js'
import { clearFault, makeFault, recordedFaults, sshBanner, stateOf } from '../../scripts/lib/host-faults.js'
import { statusText } from '../../scripts/lib/lab.js'
import { labCli, openLab, waitFor } from '../lib/lab.js'

const lab = await openLab(t, { requires: { backends: 2, bridgesHere: true } })
if (lab) {
  const backends = lab.byRole('backend')
  const victim = backends[backends.length - 1]
  const peer = backends[0]
  const lan = victim.interfaces.find((i) => i.network !== victim.mgmt.network)!
  const log = (m: string) => t.comment(m)
  const state = async () => (await stateOf(victim)).condition
  /** Replies to `count` pings from the peer, on the victim's LAN address. */
  const pings = async (count: number) => {
    const r = await lab.sh(peer.name, `ping -n -c ${count} -i 0.2 -W 1 ${lan.address}`)
    return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? -1)
  }
  const greets = async () => (await sshBanner(victim.mgmt.address, 3000))?.startsWith('SSH-') ?? false
  /** A new SSH connection: a stop ends the lab's own. */
  const fresh = async () => {
    const inv = await vagrantInventory([victim], repoRoot)
    return SshHost.connect(inv.entries.get(victim.name)!)
  }
  const undo = () => clearFault(lab.plan, victim, log)

  t.before(async () => {
    // A fault left by an earlier run that died (or by a user) is this file's to find, not to judge.
    // Not assertions: a lab that does not start from here is not this file's finding.
    if (recordedFaults().some((f) => f.host === victim.name)) await undo()
    if ((await state()) !== 'running') throw new Error(`${victim.name} does not run before the first fault`)
    if ((await pings(1)) !== 1) throw new Error(`${peer.name} does not reach ${victim.name} on ${lan.network} before`)
  })

  t.test('a wrong request is refused with a sentence, and no fault is made', async (t) => {
    const refused = async (args: string[]) => {
      const e = (await labCli('scripts/lab.ts', ['fault', ...args]).then(
        () => undefined,
        (err: unknown) => err,
      )) as { stderr?: string } | undefined
      t.ok(e, `lab:fault ${args.join(' ')} exits non-zero`)
      return e?.stderr ?? ''
    }
    t.match(await refused([victim.name]), /give exactly one of --stop, --freeze, --isolate or --clear/)
    t.match(await refused([victim.name, '--stop', '--freeze']), /not --stop and --freeze/)
    t.match(await refused(['nohost', '--stop']), /no host "nohost" in the topology/)
    t.equal(await state(), 'running', `${victim.name} still runs`)
    t.same(recordedFaults(), [], 'and nothing was recorded')
  })

  t.test(
    `${victim.name} frozen: its kernel answers, nothing above it does; thawed, it goes on as it was`,
    async (t) => {
      t.teardown(undo)
      const held = lab.host(victim.name) // an SSH connection opened before the freeze
      const bootBefore = (await held.exec('cat /proc/sys/kernel/random/boot_id')).stdout.trim()
      await makeFault(lab.plan, victim, 'freeze', log)
      t.equal(await state(), 'frozen', `its provider says frozen (${lab.providerOf(victim.name)})`)
      t.notOk(
        await greets(),
        'its SSH server does not greet on management (the handshake may complete; no process answers)',
      )
      t.equal(await pings(2), 2, 'pings from its LAN peer are still answered: the kernel is not frozen')
      t.match(
        await statusText(lab.plan),
        new RegExp(`Host faults .*${victim.name} freeze since`),
        'lab:status lists it',
      )
      t.same(await undo(), ['thawed'], 'the undo thaws it')
      t.ok(await greets(), 'its SSH server greets again at once')
      const r = await held.exec('cat /proc/sys/kernel/random/boot_id')
      t.equal(r.stdout.trim(), bootBefore, 'the connection held across the freeze still works, on the same boot')
    },
  )

  t.test(
    `${victim.name} cut off from its LANs: management kept, its peer cannot reach it; rejoined, it can`,
    async (t) => {
      t.teardown(undo)
      await makeFault(lab.plan, victim, 'isolate', log)
      t.equal(await state(), 'running', 'it still runs')
      t.ok(await greets(), 'its SSH server greets on management (kept, so it can be watched and put back)')
      t.equal(await pings(3), 0, `${peer.name} gets no reply on ${lan.network}`)
      const [link] = (await lab.sh(victim.name, `cat /sys/class/net/${lan.network}/carrier`)).stdout.trim().split('\n')
      t.equal(link, '0', `inside, its ${lan.network} interface has no carrier: a cable pulled, not a firewall rule`)
      t.same(await undo(), ['links up again'], 'the undo sets its links up')
      await waitFor(`${peer.name} to reach ${victim.name} again`, async () => (await pings(1)) === 1, 30_000)
      t.pass(`${peer.name} reaches it again`)
    },
  )

  t.test(
    `${victim.name} stopped hard: gone from every network; started, it is back whole, with its MACs`,
    async (t) => {
      t.teardown(undo)
      const before = await lab.host(victim.name).exec('cat /proc/sys/kernel/random/boot_id')
      const macs = async (h: RemoteHost) =>
        (await h.exec(`cat ${victim.interfaces.map((i) => `/sys/class/net/${i.network}/address`).join(' ')}`)).stdout
          .trim()
          .split('\n')
      const macsBefore = await macs(lab.host(victim.name))
      await makeFault(lab.plan, victim, 'stop', log)
      t.equal(await state(), 'stopped', 'its provider says stopped')
      t.notOk(await greets(), 'nothing answers on management')
      t.equal(await pings(3), 0, `${peer.name} gets no reply on ${lan.network}`)
      const done = await undo()
      t.match(done, [/^started \(SSH greets after [\d.]+ s\)$/], `the undo starts it: ${done.join(', ')}`)
      t.equal(await state(), 'running', 'its provider says running')
      const conn = await fresh()
      t.teardown(() => conn.close())
      t.not((await conn.exec('cat /proc/sys/kernel/random/boot_id')).stdout.trim(), before.stdout.trim(), 'a new boot')
      const system = (await conn.exec('timeout 120 systemctl is-system-running --wait', { check: false })).stdout
      t.equal(system.trim(), 'running', 'systemd is running, nothing failed')
      t.equal(
        (await conn.exec('systemctl is-active lab-ingest.service', { check: false })).stdout.trim(),
        'active',
        'its service came back with it (enabled at boot, not started by hand)',
      )
      // A real machine keeps its MACs, and its peers' ARP caches stay right: on lxc they
      // are the plan's (the Vagrantfile sets them), on libvirt the domain's.
      t.same(await macs(conn), macsBefore, `its interfaces have their MACs of before (${macsBefore.join(', ')})`)
      await waitFor(`${peer.name} to reach ${victim.name} again`, async () => (await pings(1)) === 1, 30_000)
      t.pass(`${peer.name} reaches it again`)
    },
  )
}
