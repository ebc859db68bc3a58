// Which provider makes each host of a lab about to be brought up: what the user asked
// (LAB_PROVIDER, LAB_VM_ROLES), else what can really run here. The plan (plan.ts) holds
// the answer; the running lab's providers are another question, read from Vagrant's own
// state (scripts/lib/providers.ts), never guessed from what is installed.
import fs from 'node:fs'
import path from 'node:path'
import { ROLES, type Role } from './topology.js'

export const PROVIDERS = ['lxc', 'libvirt', 'virtualbox'] as const
export type Provider = (typeof PROVIDERS)[number]

export interface Machine {
  /** Is a hypervisor able to run stock guests here (KVM with vmx/svm)? */
  hardwareVirt: boolean
  hasLibvirt: boolean
  hasVirtualbox: boolean
}

export interface Accel {
  accel: 'kvm' | 'tcg'
  cpu: string
  why?: string
}

/**
 * KVM where the processor really offers it, else QEMU's emulation (TCG). /dev/kvm alone
 * proves nothing: on our build machines it exists (a paravirtual KVM for specially
 * built guests) but a Debian kernel hangs on it before its first line, and the CPU has
 * no vmx/svm flag. LAB_VM_ACCEL=kvm|tcg overrides.
 */
export function vmAccel(
  env = process.env,
  cpuinfo = readOr('/proc/cpuinfo'),
  kvmDevice = fs.existsSync('/dev/kvm'),
): Accel {
  const wanted = env.LAB_VM_ACCEL
  if (wanted && wanted !== 'kvm' && wanted !== 'tcg')
    throw new Error(`LAB_VM_ACCEL=${wanted} is not known: use kvm or tcg`)
  const hw = /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)
  if (wanted === 'kvm' || (!wanted && kvmDevice && hw)) return { accel: 'kvm', cpu: 'host' }
  const why =
    wanted === 'tcg'
      ? 'LAB_VM_ACCEL=tcg'
      : !kvmDevice
        ? 'no /dev/kvm'
        : 'the processor has no vmx/svm, so /dev/kvm cannot run a stock guest kernel'
  // Under emulation qemu64 is faster than `max`: AVX2 and friends are costly to emulate.
  return { accel: 'tcg', cpu: 'qemu64', why: `emulation, slow: ${why}` }
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

export function probeMachine(): Machine {
  const onPath = (cmd: string) =>
    (process.env.PATH ?? '/usr/bin:/bin')
      .split(':')
      .concat(['/usr/sbin', '/sbin'])
      .some((d) => fs.existsSync(path.join(d, cmd)))
  return {
    hardwareVirt: vmAccel({}).accel === 'kvm',
    hasLibvirt: onPath('virsh') && onPath('qemu-system-x86_64'),
    hasVirtualbox: onPath('VBoxManage'),
  }
}

export interface ProviderChoice {
  /** host -> provider */
  providers: Record<string, Provider>
  /** One line for the user: what was chosen and why. */
  reason: string
}

/**
 * The providers a bring-up will use.
 *  LAB_PROVIDER=lxc|libvirt|virtualbox   every host (VAGRANT_DEFAULT_PROVIDER too)
 *  LAB_VM_ROLES=gateway[,role...]        hosts of these roles as VMs (libvirt unless
 *                                        LAB_PROVIDER names a VM provider), the rest lxc
 * Unasked: VirtualBox or libvirt where the processor can run VMs at full speed, else
 * lxc (emulated VMs are slow: they are chosen only when asked for).
 */
export function chooseProviders(
  hosts: readonly { name: string; role: Role }[],
  env: NodeJS.ProcessEnv = process.env,
  machine: Machine = probeMachine(),
): ProviderChoice {
  const asked = env.LAB_PROVIDER || env.VAGRANT_DEFAULT_PROVIDER
  if (asked && !(PROVIDERS as readonly string[]).includes(asked)) {
    throw new Error(`LAB_PROVIDER=${asked} is not a provider this lab knows: use ${PROVIDERS.join(', ')}`)
  }
  const vmRoles = (env.LAB_VM_ROLES ?? '')
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean)
  for (const r of vmRoles) {
    if (!(ROLES as readonly string[]).includes(r))
      throw new Error(`LAB_VM_ROLES names ${r}, which is not a role: use ${ROLES.join(', ')}`)
  }
  if (vmRoles.length && env.VAGRANT_DEFAULT_PROVIDER) {
    throw new Error(
      'LAB_VM_ROLES mixes providers, but VAGRANT_DEFAULT_PROVIDER forces one on every machine: unset VAGRANT_DEFAULT_PROVIDER and use LAB_PROVIDER',
    )
  }
  let base: Provider
  let reason: string
  if (asked) {
    base = asked as Provider
    reason = `${env.LAB_PROVIDER ? 'LAB_PROVIDER' : 'VAGRANT_DEFAULT_PROVIDER'}=${asked}`
  } else if (machine.hardwareVirt && machine.hasVirtualbox) {
    base = 'virtualbox'
    reason = 'VirtualBox is installed and the processor runs VMs'
  } else if (machine.hardwareVirt && machine.hasLibvirt) {
    base = 'libvirt'
    reason = 'libvirt is installed and the processor runs VMs (KVM)'
  } else {
    base = 'lxc'
    reason = machine.hardwareVirt
      ? 'no VM provider installed'
      : 'no hardware virtualization here (VMs would be emulated: ask with LAB_PROVIDER=libvirt)'
  }
  const vmProvider: Provider = base === 'lxc' ? 'libvirt' : base
  const providers: Record<string, Provider> = {}
  for (const h of hosts) providers[h.name] = vmRoles.includes(h.role) ? vmProvider : base
  if (vmRoles.length) reason += `; LAB_VM_ROLES=${vmRoles.join(',')} as ${vmProvider} VMs`
  return { providers, reason }
}

/**
 * The providers whose machines answer SSH on the plan's management address (the
 * Vagrantfile puts them there: lxc.ssh_ip_addr, libvirt's DHCP reservation); VirtualBox's
 * are reached through a NAT port Vagrant picks, which only Vagrant can say.
 */
export const SSH_ON_MANAGEMENT: readonly Provider[] = ['lxc', 'libvirt']
