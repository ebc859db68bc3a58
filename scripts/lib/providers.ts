// Which provider makes each host. Two different questions, never mixed up:
//  - the plan, for a lab about to be brought up: what the user asked (LAB_PROVIDER,
//    LAB_VM_ROLES), else what can really run here;
//  - the running lab's providers, read from Vagrant's own state
//    (.vagrant/machines/HOST/PROVIDER/id), never guessed from what is installed.
import fs from 'node:fs'
import path from 'node:path'
import { ROLES, type Topology } from '../../provision/topology.js'
import { vmAccel } from './libvirt.js'
import { repoRoot } from '../../provision/paths.js'

export const PROVIDERS = ['lxc', 'libvirt', 'virtualbox'] as const
export type Provider = (typeof PROVIDERS)[number]

export interface Machine {
  /** Is a hypervisor able to run stock guests here (KVM with vmx/svm)? */
  hardwareVirt: boolean
  hasLibvirt: boolean
  hasVirtualbox: boolean
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

export interface Plan {
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
export function planProviders(
  t: Topology,
  env: NodeJS.ProcessEnv = process.env,
  machine: Machine = probeMachine(),
): Plan {
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
  for (const h of t.hosts) providers[h.name] = vmRoles.includes(h.role) ? vmProvider : base
  if (vmRoles.length) reason += `; LAB_VM_ROLES=${vmRoles.join(',')} as ${vmProvider} VMs`
  return { providers, reason }
}

/** The providers of the hosts Vagrant has created in this clone, from its own state. */
export function runningProviders(cwd = repoRoot): Map<string, Provider> {
  const found = new Map<string, Provider>()
  const dir = path.join(cwd, '.vagrant', 'machines')
  if (!fs.existsSync(dir)) return found
  for (const host of fs.readdirSync(dir)) {
    for (const p of PROVIDERS) {
      if (fs.existsSync(path.join(dir, host, p, 'id'))) found.set(host, p)
    }
  }
  return found
}

/** One word for a set of providers: the provider, or 'mixed'. */
export function providerSummary(providers: Iterable<Provider>): Provider | 'mixed' | 'none' {
  const set = new Set(providers)
  if (set.size === 0) return 'none'
  return set.size === 1 ? [...set][0] : 'mixed'
}

export const hostsOf = (providers: Record<string, Provider> | Map<string, Provider>, p: Provider) =>
  [...(providers instanceof Map ? providers : new Map(Object.entries(providers)))]
    .filter(([, v]) => v === p)
    .map(([k]) => k)
