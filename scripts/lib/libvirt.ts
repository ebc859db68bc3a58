// libvirt and QEMU as the lab uses them for VMs: how a guest is accelerated, the
// daemons (started by the lab where PID 1 is not systemd), the storage pool, and the
// management network, which reaches this machine only: no NAT, no forwarding, and
// isolated ports, so that it never joins two hosts (the same rule as on lxc).
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { formatAddress, mask } from '../../provision/lib/ipv4.js'
import type { Plan } from '../../provision/plan.js'
import { waitFor } from '../../provision/lib/wait.js'

const q = { quiet: true, nothrow: true }

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

export const LIBVIRT_RUN_DIR = '/run/iotlab'

/** Is a daemon answering? libvirtd through virsh; virtlogd through its socket. */
async function libvirtdUp(): Promise<boolean> {
  return (await $(q)`virsh -c qemu:///system version`).exitCode === 0
}

/**
 * Start virtlogd and libvirtd when they do not run. Under systemd, their units; where
 * PID 1 is something else (our build machines), the daemons themselves, with absolute
 * pid files under /run/iotlab (libvirtd refuses a relative one), so lab:down can stop
 * exactly what the lab started.
 */
export async function ensureLibvirtDaemons(log: (m: string) => void): Promise<void> {
  ensureKvmDeviceGroup(log)
  if (await libvirtdUp()) return
  const systemd = fs.existsSync('/run/systemd/system')
  if (systemd) {
    log('Starting libvirtd and virtlogd (systemd)')
    await $({ quiet: true })`systemctl start virtlogd.socket libvirtd.socket libvirtd.service`
  } else {
    fs.mkdirSync(LIBVIRT_RUN_DIR, { recursive: true })
    if ((await $(q)`pidof virtlogd`).exitCode !== 0) {
      log('Starting virtlogd (PID 1 is not systemd here)')
      await $({ quiet: true })`virtlogd -d -p ${path.join(LIBVIRT_RUN_DIR, 'virtlogd.pid')}`
    }
    log('Starting libvirtd (PID 1 is not systemd here)')
    await $({ quiet: true })`libvirtd -d -p ${path.join(LIBVIRT_RUN_DIR, 'libvirtd.pid')}`
  }
  await waitFor(
    'libvirtd to answer after starting it (see `journalctl -u libvirtd` or run `libvirtd -v` by hand)',
    libvirtdUp,
    20_000,
    200,
  )
}

/**
 * /dev/kvm as Debian's udev rule leaves it (root:kvm 0660, the group QEMU runs in).
 * Without udev it stays root-only, and libvirt then finds KVM "enabled when probing,
 * but not available now" on every call: it probes QEMU again each time (8 to 15 s per
 * call, measured), which made every step of a VM's creation crawl.
 */
function ensureKvmDeviceGroup(log: (m: string) => void): void {
  if (!fs.existsSync('/dev/kvm')) return
  const kvm = /^kvm:x:(\d+):/m.exec(readOr('/etc/group'))
  if (!kvm) return
  const st = fs.statSync('/dev/kvm')
  if (st.gid === Number(kvm[1]) && (st.mode & 0o060) === 0o060) return
  log(
    "Giving /dev/kvm to group kvm, mode 0660, as Debian's udev rule does (libvirt re-probes QEMU on every call otherwise)",
  )
  fs.chownSync('/dev/kvm', 0, Number(kvm[1]))
  fs.chmodSync('/dev/kvm', 0o660)
}

/** Stop the daemons the lab itself started (by their pid files), nothing else. */
export async function stopLabDaemons(log: (m: string) => void): Promise<void> {
  for (const d of ['libvirtd', 'virtlogd']) {
    const file = path.join(LIBVIRT_RUN_DIR, `${d}.pid`)
    if (!fs.existsSync(file)) continue
    const pid = Number(fs.readFileSync(file, 'utf8').trim())
    if (pid > 1 && fs.existsSync(`/proc/${pid}`) && readOr(`/proc/${pid}/comm`).trim() === d) {
      log(`Stopping ${d} (pid ${pid}, started by the lab)`)
      process.kill(pid, 'SIGTERM')
      // Gone or not after 5 s, its PID file goes: lab:down's remnants check says if it stayed.
      await waitFor(
        `${d} (pid ${pid}) to exit`,
        () => Promise.resolve(!fs.existsSync(`/proc/${pid}`)),
        5000,
        100,
      ).catch(() => {})
    }
    fs.rmSync(file, { force: true })
  }
}

/** A daemon the lab started and that still runs (for lab:down's check). */
export function runningLabDaemons(): string[] {
  const out: string[] = []
  for (const d of ['libvirtd', 'virtlogd']) {
    const file = path.join(LIBVIRT_RUN_DIR, `${d}.pid`)
    if (!fs.existsSync(file)) continue
    const pid = Number(fs.readFileSync(file, 'utf8').trim())
    if (fs.existsSync(`/proc/${pid}`) && readOr(`/proc/${pid}/comm`).trim() === d) out.push(`${d} (pid ${pid})`)
  }
  return out
}

/** vagrant-libvirt's storage pool: 'default', made here if libvirt has none. */
export async function ensureStoragePool(log: (m: string) => void): Promise<void> {
  if ((await $(q)`virsh -c qemu:///system pool-info default`).exitCode !== 0) {
    log('Defining libvirt storage pool "default" (/var/lib/libvirt/images)')
    fs.mkdirSync('/var/lib/libvirt/images', { recursive: true })
    await $({ quiet: true })`virsh -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images`
  }
  if (!/State:\s+running/.test((await $(q)`virsh -c qemu:///system pool-info default`).stdout)) {
    await $({ quiet: true })`virsh -c qemu:///system pool-start default`
  }
}

/** A stable MAC per host for its management NIC, so DHCP can give it the topology's address. */
export function mgmtMac(t: Plan, host: string): string {
  const h = t.hosts.find((x) => x.name === host)
  if (!h) throw new Error(`no host ${host}`)
  const [, , c, d] = h.mgmt.address.split('.').map(Number)
  return `52:54:00:1a:${c.toString(16).padStart(2, '0')}:${d.toString(16).padStart(2, '0')}`
}

export const mgmtNetworkName = (t: Plan) => t.networks.find((n) => n.kind === 'management')!.bridge

/**
 * The management network as libvirt defines it: this machine's address, DHCP that
 * hands each VM its topology address (and nothing to anyone else), no <forward> (an
 * isolated network: libvirt routes nothing out of it), ports isolated from each other.
 * Its bridge is the lab's management bridge; the lxc hosts of a mixed lab join it too.
 */
export function mgmtNetworkXml(t: Plan, vmHosts: string[]): string {
  const net = t.networks.find((n) => n.kind === 'management')!
  const mask = prefixToMask(net.prefix)
  const hosts = vmHosts.map((name) => {
    const h = t.hosts.find((x) => x.name === name)!
    return `      <host mac='${mgmtMac(t, name)}' name='${name}' ip='${h.mgmt.address}'/>`
  })
  return (
    [
      '<network>',
      `  <name>${net.bridge}</name>`,
      `  <bridge name='${net.bridge}' stp='off' delay='0'/>`,
      "  <port isolated='yes'/>",
      `  <ip address='${net.hostAddress}' netmask='${mask}'>`,
      '    <dhcp>',
      ...hosts,
      '    </dhcp>',
      '  </ip>',
      '</network>',
    ].join('\n') + '\n'
  )
}

/** A prefix length as a dotted netmask (24: 255.255.255.0), as libvirt and ifupdown want it. */
export const prefixToMask = (prefix: number): string => formatAddress(mask(prefix))

/**
 * Define and start the management network, or bring an existing one up to date: a
 * host entry missing from its DHCP is added live (`net-update`), never by recreating
 * the network under running VMs.
 */
export async function ensureMgmtNetwork(t: Plan, vmHosts: string[], log: (m: string) => void): Promise<void> {
  await ensureLibvirtDaemons(log)
  const name = mgmtNetworkName(t)
  const want = mgmtNetworkXml(t, vmHosts)
  const have = await $(q)`virsh -c qemu:///system net-dumpxml --inactive ${name}`
  if (have.exitCode === 0) {
    for (const line of want.split('\n').filter((l) => l.includes('<host '))) {
      const mac = /mac='([^']+)'/.exec(line)![1]
      const entry = line.trim()
      if (have.stdout.includes(entry)) continue
      if (have.stdout.toLowerCase().includes(`mac='${mac}'`)) {
        await $({
          quiet: true,
        })`virsh -c qemu:///system net-update ${name} delete ip-dhcp-host ${`<host mac='${mac}'/>`} --live --config`.nothrow()
      }
      log(`Adding a DHCP entry to ${name}: ${entry}`)
      const active = /Active:\s+yes/.test((await $(q)`virsh -c qemu:///system net-info ${name}`).stdout)
      await $({
        quiet: true,
      })`virsh -c qemu:///system net-update ${name} add ip-dhcp-host ${entry} ${active ? ['--live', '--config'] : ['--config']}`
    }
    if (!/Active:\s+yes/.test((await $(q)`virsh -c qemu:///system net-info ${name}`).stdout)) {
      // A bridge left by a libvirtd that was killed (not stopped) blocks the start.
      if (fs.existsSync(`/sys/class/net/${name}`)) {
        log(`Removing the stale bridge ${name} of an inactive libvirt network`)
        await $({ quiet: true })`ip link delete ${name}`
      }
      await $({ quiet: true })`virsh -c qemu:///system net-start ${name}`
    }
    return
  }
  // libvirt makes the bridge itself and refuses one that exists: a plain bridge left
  // by an lxc-only lab goes first, and its ports (the running containers' management
  // veths) join libvirt's bridge as they were, isolated: the containers keep running,
  // with their state, instead of being remade.
  const ports = bridgePorts(name)
  if (fs.existsSync(`/sys/class/net/${name}`)) {
    log(
      `Replacing the plain bridge ${name} with libvirt's network (the lab has VMs now)${ports.length ? `; its ${ports.length} port(s) move over` : ''}`,
    )
    await $({ quiet: true })`ip link delete ${name}`
  }
  log(
    `Defining libvirt network ${name}: isolated (no NAT, no forwarding, isolated ports), DHCP for the lab's hosts only`,
  )
  const file = path.join(fs.mkdtempSync('/tmp/iotlab-net-'), `${name}.xml`)
  fs.writeFileSync(file, want)
  try {
    await $({ quiet: true })`virsh -c qemu:///system net-define ${file}`
    await $({ quiet: true })`virsh -c qemu:///system net-start ${name}`
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true })
  }
  for (const port of ports.filter((p) => fs.existsSync(`/sys/class/net/${p}`))) {
    // As scripts/lxc-net-up.sh does when LXC attaches it: a port that reaches only the bridge.
    await $({ quiet: true })`ip link set dev ${port} master ${name}`
    await $({ quiet: true })`bridge link set dev ${port} isolated on`
  }
}

/** The interfaces enslaved to a bridge (none if it does not exist). */
export function bridgePorts(bridge: string): string[] {
  const dir = `/sys/class/net/${bridge}/brif`
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []
}

/** Remove the management network if libvirt has it. */
export async function removeMgmtNetwork(t: Plan, log: (m: string) => void): Promise<void> {
  const name = mgmtNetworkName(t)
  if ((await $(q)`virsh -c qemu:///system net-info ${name}`).exitCode !== 0) return
  log(`Removing libvirt network ${name}`)
  await $(q)`virsh -c qemu:///system net-destroy ${name}`
  await $(q)`virsh -c qemu:///system net-undefine ${name}`
}

export async function libvirtAvailable(): Promise<boolean> {
  return (
    (
      await $(
        q,
      )`sh -c ${'command -v virsh && command -v qemu-system-x86_64 && (command -v libvirtd || test -x /usr/sbin/libvirtd)'}`
    ).exitCode === 0
  )
}

export const virsh = (args: string[]) => $(q)`virsh -c qemu:///system ${args}`

/** Is libvirt running here at all? (Without it, it holds nothing of the lab.) */
async function libvirtReachable(): Promise<boolean> {
  return (await libvirtAvailable()) && (await libvirtdUp())
}

export async function mgmtNetworkDefined(t: Plan): Promise<boolean> {
  return (await libvirtReachable()) && (await virsh(['net-info', mgmtNetworkName(t)])).exitCode === 0
}

/** Does libvirt know this domain (by the UUID Vagrant records in .vagrant/machines/HOST/libvirt/id)? */
export async function domainExists(uuid: string): Promise<boolean> {
  return (await virsh(['dominfo', uuid])).exitCode === 0
}

/** A host's VM as libvirt names it (the Vagrantfile's default_prefix: NAME-host). */
export const domainOf = (t: Plan, host: string) => `${t.name}-${host}`

/** The lab's VMs libvirt knows (vagrant-libvirt names them NAME-host). */
export async function labDomains(t: Plan): Promise<string[]> {
  if (!(await libvirtReachable())) return []
  return (await virsh(['list', '--all', '--name'])).stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n.startsWith(`${t.name}-`))
}

/** The lab's volumes in the default pool: VM disks and the VM box's base image. */
export async function labVolumes(t: Plan): Promise<string[]> {
  if (!(await libvirtReachable())) return []
  const r = await virsh(['vol-list', 'default'])
  if (r.exitCode !== 0) return []
  return r.stdout
    .split('\n')
    .slice(2)
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n && n.startsWith(`${t.name}-`))
}

/** Stop a VM at once and remove it with its disks. */
async function removeDomain(d: string): Promise<void> {
  await virsh(['destroy', d])
  await virsh(['undefine', '--remove-all-storage', '--nvram', d])
}

export async function removeLabDomains(t: Plan, log: (m: string) => void): Promise<void> {
  for (const d of await labDomains(t)) {
    log(`Removing VM ${d}`)
    await removeDomain(d)
  }
}

export async function removeLabVolumes(t: Plan, log: (m: string) => void): Promise<void> {
  for (const v of await labVolumes(t)) {
    log(`Removing volume ${v}`)
    await virsh(['vol-delete', '--pool', 'default', v])
  }
}

/**
 * VMs of this lab that this clone's Vagrant does not know (left by another clone or
 * session: CI runs in a fresh clone on the same machine) hold the lab's addresses on
 * its bridges: removed with their disks. vagrant-libvirt records a VM's UUID as its id.
 */
export async function removeStaleDomains(t: Plan, known: Set<string>, log: (m: string) => void): Promise<string[]> {
  const removed: string[] = []
  for (const d of await labDomains(t)) {
    const uuid = (await virsh(['domuuid', d])).stdout.trim()
    if (known.has(uuid)) continue
    log(`Removing VM ${d}: left by another clone or session`)
    await removeDomain(d)
    removed.push(d)
  }
  return removed
}
