// What the machine running the lab needs, and installing it when it is missing.
// Debian-like machines get it through apt (with a message saying so); elsewhere the
// error names exactly what to install.
import { $ } from 'zx'

export interface Requirement { pkg: string; why: string; present(): Promise<boolean> }

const q = { quiet: true, nothrow: true }
export const hasCommand = (cmd: string) => async () =>
  (await $(q)`sh -c ${`command -v ${cmd} || test -x /usr/sbin/${cmd} || test -x /sbin/${cmd}`}`).exitCode === 0

const installed = (pkg: string) => async () =>
  (await $(q)`dpkg-query -W -f=${'${db:Status-Status}'} ${pkg}`).stdout.trim() === 'installed'

/** Debian package names; `--no-install-recommends` keeps qemu and ~400 packages out. */
export const LXC_REQUIREMENTS: Requirement[] = [
  { pkg: 'vagrant', why: 'makes the hosts', present: hasCommand('vagrant') },
  { pkg: 'lxc', why: 'runs the hosts as system containers', present: hasCommand('lxc-start') },
  {
    pkg: 'vagrant-lxc', why: "Vagrant's lxc provider",
    present: async () => (await installed('vagrant-lxc')()) || /vagrant-lxc/.test((await $(q)`vagrant plugin list`).stdout),
  },
  { pkg: 'bridge-utils', why: 'vagrant-lxc calls brctl', present: hasCommand('brctl') },
  { pkg: 'iproute2', why: 'bridges, and isolated management ports', present: hasCommand('bridge') },
  { pkg: 'mmdebstrap', why: 'builds the box from Debian packages', present: hasCommand('mmdebstrap') },
  { pkg: 'nftables', why: 'keeps this machine from routing into the lab', present: hasCommand('nft') },
  { pkg: 'openssh-client', why: 'vagrant ssh', present: hasCommand('ssh') },
  { pkg: 'strongswan-pki', why: 'the lab CA and the gateways\' certificates', present: hasCommand('pki') },
  { pkg: 'libstrongswan-standard-plugins', why: 'Ed25519 for pki (its openssl plugin)', present: installed('libstrongswan-standard-plugins') },
]

/** What VMs under libvirt need besides the common tools (the lxc list minus lxc itself). */
export const LIBVIRT_REQUIREMENTS: Requirement[] = [
  ...LXC_REQUIREMENTS.filter((r) => !['lxc', 'vagrant-lxc', 'bridge-utils'].includes(r.pkg)),
  { pkg: 'qemu-system-x86', why: 'runs the VMs (KVM, or emulation without it)', present: hasCommand('qemu-system-x86_64') },
  { pkg: 'qemu-utils', why: 'qemu-img makes the VM box\'s disk', present: hasCommand('qemu-img') },
  { pkg: 'libvirt-daemon-system', why: 'libvirtd, which vagrant-libvirt drives', present: hasCommand('libvirtd') },
  { pkg: 'libvirt-clients', why: 'virsh: the lab\'s management network and pool', present: hasCommand('virsh') },
  {
    pkg: 'vagrant-libvirt', why: "Vagrant's libvirt provider",
    present: async () => (await installed('vagrant-libvirt')()) || /vagrant-libvirt/.test((await $(q)`vagrant plugin list`).stdout),
  },
  { pkg: 'fdisk', why: 'sfdisk partitions the VM box\'s disk', present: hasCommand('sfdisk') },
  { pkg: 'e2fsprogs', why: 'mkfs.ext4 -d makes its filesystem without a loop mount', present: hasCommand('mkfs.ext4') },
]

export async function missingRequirements(reqs = LXC_REQUIREMENTS): Promise<Requirement[]> {
  const missing: Requirement[] = []
  for (const r of reqs) if (!(await r.present())) missing.push(r)
  return missing
}

export async function ensureRequirements(log: (m: string) => void, reqs = LXC_REQUIREMENTS): Promise<void> {
  const missing = await missingRequirements(reqs)
  if (missing.length === 0) return
  const pkgs = missing.map((m) => m.pkg)
  const list = missing.map((m) => `  ${m.pkg.padEnd(14)} ${m.why}`).join('\n')
  if (!(await hasCommand('apt-get')())) {
    throw new Error(`this machine lacks what the lab needs and has no apt-get to install it:\n${list}\nInstall these (Debian package names; their equivalents elsewhere), then run again.`)
  }
  if (process.getuid?.() !== 0) {
    throw new Error(`missing packages:\n${list}\nInstall them as root: sudo apt-get install --no-install-recommends ${pkgs.join(' ')}`)
  }
  log(`Installing what the lab needs with apt: ${pkgs.join(' ')}`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  await $({ quiet: true, env })`apt-get update -qq`
  await $({ quiet: true, env })`apt-get install -y -qq --no-install-recommends ${pkgs}`
  const still = await missingRequirements(reqs)
  if (still.length) throw new Error(`apt-get ran, yet still missing: ${still.map((m) => m.pkg).join(', ')}`)
}
