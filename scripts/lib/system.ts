// What the machine running the lab needs, and installing it when it is missing.
// Debian-like machines get it through apt (with a message saying so); elsewhere the
// error names exactly what to install.
import fs from 'node:fs'
import { $ } from 'zx'

export interface Requirement {
  pkg: string
  why: string
  present(): Promise<boolean>
}

const q = { quiet: true, nothrow: true }
export const hasCommand = (cmd: string) => async () =>
  (await $(q)`sh -c ${`command -v ${cmd} || test -x /usr/sbin/${cmd} || test -x /sbin/${cmd}`}`).exitCode === 0

const installed = (pkg: string) => async () =>
  (await $(q)`dpkg-query -W -f=${'${db:Status-Status}'} ${pkg}`).stdout.trim() === 'installed'

/**
 * What the operator commands and the tests run on this machine, beside the lab's own
 * list: `npm run lab` installs them with the rest, and each command that needs one
 * checks for it before it starts (requireTools below), so `npm test` and
 * `npm run lab:capture` work on a machine where nobody installed them by hand.
 */
export const TOOLS = {
  tcpdump: {
    pkg: 'tcpdump',
    why: "lab:capture and the tests' captures on the lab's bridges and veths",
    present: hasCommand('tcpdump'),
  },
  ping: {
    pkg: 'iputils-ping',
    why: 'the stretched-bridge test pings between network namespaces on this machine',
    present: hasCommand('ping'),
  },
  chromium: {
    pkg: 'chromium',
    why: 'the console page seen as a person sees it (headless, in the monitoring test)',
    present: hasCommand('chromium'),
  },
  promtool: {
    pkg: 'prometheus',
    why: "promtool: the alert rules' tests and the scrape config's check (the server is not started)",
    present: hasCommand('promtool'),
  },
  openssl: { pkg: 'openssl', why: 'the services CA and the TLS unit tests', present: hasCommand('openssl') },
  nginx: {
    pkg: 'nginx-light',
    why: 'nginx -t on the rendered nginx.conf in the unit tests (the server is not started)',
    present: hasCommand('nginx'),
  },
  keepalived: {
    pkg: 'keepalived',
    why: 'keepalived -t on the rendered keepalived.conf in the unit tests (with no config of its own here, it does not start)',
    present: hasCommand('keepalived'),
  },
  sshd: {
    pkg: 'openssh-server',
    why: 'sshd -t on the rendered sshd_config in the unit tests (the server is not started)',
    present: hasCommand('sshd'),
  },
} satisfies Record<string, Requirement>

/** Debian package names; `--no-install-recommends` keeps qemu and ~400 packages out. */
export const LXC_REQUIREMENTS: Requirement[] = [
  { pkg: 'vagrant', why: 'makes the hosts', present: hasCommand('vagrant') },
  { pkg: 'lxc', why: 'runs the hosts as system containers', present: hasCommand('lxc-start') },
  {
    pkg: 'vagrant-lxc',
    why: "Vagrant's lxc provider",
    present: async () =>
      (await installed('vagrant-lxc')()) || /vagrant-lxc/.test((await $(q)`vagrant plugin list`).stdout),
  },
  { pkg: 'bridge-utils', why: 'vagrant-lxc calls brctl', present: hasCommand('brctl') },
  { pkg: 'iproute2', why: 'bridges, and isolated management ports', present: hasCommand('bridge') },
  { pkg: 'mmdebstrap', why: 'builds the box from Debian packages', present: hasCommand('mmdebstrap') },
  { pkg: 'nftables', why: 'keeps this machine from routing into the lab', present: hasCommand('nft') },
  { pkg: 'openssh-client', why: 'vagrant ssh', present: hasCommand('ssh') },
  { pkg: 'strongswan-pki', why: "the lab CA and the gateways' certificates", present: hasCommand('pki') },
  {
    pkg: 'libstrongswan-standard-plugins',
    why: 'Ed25519 for pki (its openssl plugin)',
    present: installed('libstrongswan-standard-plugins'),
  },
  TOOLS.tcpdump, // lab:capture, an operator's command as much as lab:status
]

/** What VMs under libvirt need besides the common tools (the lxc list minus lxc itself). */
export const LIBVIRT_REQUIREMENTS: Requirement[] = [
  ...LXC_REQUIREMENTS.filter((r) => !['lxc', 'vagrant-lxc', 'bridge-utils'].includes(r.pkg)),
  {
    pkg: 'qemu-system-x86',
    why: 'runs the VMs (KVM, or emulation without it)',
    present: hasCommand('qemu-system-x86_64'),
  },
  { pkg: 'qemu-utils', why: "qemu-img makes the VM box's disk", present: hasCommand('qemu-img') },
  { pkg: 'libvirt-daemon-system', why: 'libvirtd, which vagrant-libvirt drives', present: hasCommand('libvirtd') },
  { pkg: 'libvirt-clients', why: "virsh: the lab's management network and pool", present: hasCommand('virsh') },
  {
    pkg: 'vagrant-libvirt',
    why: "Vagrant's libvirt provider",
    present: async () =>
      (await installed('vagrant-libvirt')()) || /vagrant-libvirt/.test((await $(q)`vagrant plugin list`).stdout),
  },
  { pkg: 'fdisk', why: "sfdisk partitions the VM box's disk", present: hasCommand('sfdisk') },
  { pkg: 'e2fsprogs', why: 'mkfs.ext4 -d makes its filesystem without a loop mount', present: hasCommand('mkfs.ext4') },
]

/** The unit tests alone (no lab): everything they check with a real tool. */
export const UNIT_REQUIREMENTS: Requirement[] = [
  TOOLS.promtool,
  TOOLS.openssl,
  TOOLS.nginx,
  TOOLS.keepalived,
  TOOLS.sshd,
  ...LXC_REQUIREMENTS.filter((r) =>
    ['vagrant', 'nftables', 'strongswan-pki', 'libstrongswan-standard-plugins'].includes(r.pkg),
  ),
]
/** `npm test` and `npm run test:vm`: the unit tests' tools and the scenarios' own (the lab's packages come with `npm run lab`). */
export const TEST_REQUIREMENTS: Requirement[] = [...UNIT_REQUIREMENTS, TOOLS.tcpdump, TOOLS.ping, TOOLS.chromium]

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
    throw new Error(
      `this machine lacks what the lab needs and has no apt-get to install it:\n${list}\nInstall these (Debian package names; their equivalents elsewhere), then run again.`,
    )
  }
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing packages:\n${list}\nInstall them as root: sudo apt-get install --no-install-recommends ${pkgs.join(' ')}`,
    )
  }
  log(`Installing what the lab needs with apt: ${pkgs.join(' ')}`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  await $({ quiet: true, env })`apt-get update -qq`
  await withoutServiceStarts(() => $({ quiet: true, env })`apt-get install -y -qq --no-install-recommends ${pkgs}`)
  const still = await missingRequirements(reqs)
  if (still.length) throw new Error(`apt-get ran, yet still missing: ${still.map((m) => m.pkg).join(', ')}`)
}

/**
 * Debian starts a package's server when it is installed (prometheus, nginx, sshd,
 * libvirtd): none of them may run on this machine, which only needs their tools. A
 * policy-rc.d that answers 101 ("action not allowed") while apt runs keeps them
 * stopped; one that was already there is left as it was.
 */
async function withoutServiceStarts<T>(fn: () => Promise<T>): Promise<T> {
  const policy = '/usr/sbin/policy-rc.d'
  if (fs.existsSync(policy)) return fn()
  fs.writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 })
  try {
    return await fn()
  } finally {
    fs.rmSync(policy, { force: true })
  }
}

/**
 * Before a command that needs these tools: install what is missing (as root, with
 * apt, saying so), or stop with the exact command to run. With `soft`, a machine
 * that cannot install them (not root, no apt) gets that command printed and the run
 * goes on: the checks that need a tool then skip, naming it.
 */
export async function requireTools(
  reqs: Requirement[],
  log: (m: string) => void,
  opts: { soft?: boolean } = {},
): Promise<void> {
  try {
    await ensureRequirements(log, reqs)
  } catch (e) {
    if (!opts.soft) throw e
    log(`warning: ${(e as Error).message}`)
  }
}
