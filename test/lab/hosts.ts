// Every host of the topology exists as the topology says: it answers, systemd runs
// with nothing failed, and it has exactly its interfaces and addresses.
import t from 'tap'
import { $ } from 'zx'
import { parseSshConfig, stateEntry } from '../../provision/inventory.js'
import { repoRoot } from '../../provision/paths.js'
import { vrrpGroupOf } from '../../provision/plan.js'
import { machineStates, vagrantStates } from '../../scripts/lib/vagrant.js'
import { machineOf, providerOps } from '../../scripts/lib/providers.js'
import { containerLimits } from '../../scripts/lib/lxc-limits.js'
import { openLab } from '../lib/lab.js'

const lab = await openLab(t)
if (lab) {
  // The tests, provisioning and lab:status read machine states and SSH entries from
  // Vagrant's state and the providers (milliseconds), not from `vagrant status` and
  // `vagrant ssh-config` (10 s a call each): the shortcut must say what Vagrant says.
  t.test("Vagrant's state, read directly, says what `vagrant status` and `vagrant ssh-config` say", async (t) => {
    const [fast, slow] = [await machineStates(), await vagrantStates()]
    for (const host of lab.plan.hosts)
      t.equal(fast.get(host.name), slow.get(host.name), `${host.name}: ${slow.get(host.name)}`)
    const asked = parseSshConfig((await $({ cwd: repoRoot, quiet: true })`vagrant ssh-config`).stdout)
    for (const host of lab.plan.hosts)
      t.same(stateEntry(host, repoRoot), asked.get(host.name), `${host.name}: ${asked.get(host.name)?.hostName}`)
  })

  t.test('each host has the CPUs and memory its topology gives it', async (t) => {
    for (const host of lab.plan.hosts) {
      if (lab.providerOf(host.name) === 'lxc') {
        // A container: cgroup limits where the topology sets memory or cpus, none where
        // it does not (it shares this machine's), read from its cgroup on this machine.
        const limits = await containerLimits(machineOf(host.name).machine.id)
        t.same(limits, host.limits, `${host.name} (container): ${JSON.stringify(limits)}`)
      } else {
        // A VM: its CPUs and its memory, as its kernel counts them (less what it keeps).
        const r = await lab.sh(host.name, "nproc; awk '/^MemTotal/ { print $2 }' /proc/meminfo")
        const [cpus, kib] = r.stdout.trim().split('\n').map(Number)
        t.equal(cpus, host.cpus, `${host.name} (VM): ${cpus} CPUs`)
        const mib = kib / 1024
        t.ok(
          mib > host.memory * 0.75 && mib <= host.memory,
          `${host.name} (VM): ${mib.toFixed(0)} MiB of its ${host.memory} MiB for the kernel`,
        )
      }
    }
  })

  for (const host of lab.plan.hosts) {
    t.test(`${host.name} answers over SSH and is who the topology says`, async (t) => {
      t.equal((await lab.sh(host.name, 'hostname')).stdout.trim(), host.name, 'its hostname')
      const described = JSON.parse((await lab.sh(host.name, 'cat /etc/lab/host.json')).stdout)
      t.equal(described.role, host.role, 'its role, as provisioned')
    })

    t.test(`${host.name}: systemd is running with no failed unit`, async (t) => {
      const state = (await lab.sh(host.name, 'timeout 60 systemctl is-system-running --wait')).stdout.trim()
      const failed = (await lab.sh(host.name, 'systemctl --failed --no-legend --plain')).stdout.trim()
      t.equal(failed, '', 'no failed unit')
      t.equal(state, 'running', 'system state')
    })

    t.test(`${host.name} has exactly the interfaces and addresses its topology says`, async (t) => {
      // A pair's member may hold the pair's virtual addresses (the active one does; which
      // one is failover.ts's to judge): the rest must be exactly the topology's.
      const virtual = vrrpGroupOf(lab.plan, host.name)?.addresses.map((a) => a.address) ?? []
      const actual = lab.facts(host.name).addresses.filter((a) => a.ifname !== 'lo' && !virtual.includes(a.address))
      if (providerOps(lab.providerOf(host.name)!).nicNames === 'network') {
        // On lxc each NIC is named after its network: names and addresses must match exactly.
        // A LAN's gateway also answers for the LAN's old server address (a /32).
        const oldServers = lab.plan.networks
          .filter((n) => n.gateway === host.name && n.oldServer)
          .map((n) => `${n.name} ${n.oldServer!.address}/32`)
        const want = [...host.interfaces.map((i) => `${i.network} ${i.address}/${i.prefix}`), ...oldServers].sort()
        t.same(actual.map((a) => `${a.ifname} ${a.address}/${a.prefix}`).sort(), want)
      } else {
        // On VMs NICs keep the guest's names (eth0 is management, from the lab's DHCP);
        // every address must be there, and nothing else.
        for (const i of host.interfaces.slice(1)) {
          t.ok(
            actual.some((a) => a.address === i.address && a.prefix === i.prefix),
            `${i.network}: ${i.address}/${i.prefix}`,
          )
        }
        const oldServers = lab.plan.networks
          .filter((n) => n.gateway === host.name && n.oldServer)
          .map((n) => n.oldServer!.address)
        t.ok(
          actual.some((a) => a.address === host.mgmt.address && a.ifname === lab.facts(host.name).mgmtInterface),
          `management: ${host.mgmt.address} (the topology's, handed out by the lab's DHCP)`,
        )
        const extra = actual.filter(
          (a) => !host.interfaces.some((i) => i.address === a.address) && !oldServers.includes(a.address),
        )
        t.same(extra, [], 'no address the topology does not name')
      }
      const v6 = (await lab.sh(host.name, 'ip -6 -o addr show')).stdout.trim()
      t.equal(v6, '', 'no IPv6 address at all')
    })
  }
}
