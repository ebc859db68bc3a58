// Role vrrp: keepalived on every member of a topology group (a proxy pair today). The
// active member holds the group's virtual addresses; the others take them over when its
// adverts stop or its service fails the role's health check. What it runs comes from
// the plan (plan.vrrp: the instance, priorities, unicast peers) and from the member's
// role module (health: the command that says its service answers). A member's service
// listens on the virtual address before it holds it (ip_nonlocal_bind), so a takeover
// starts nothing: the address arrives and the service already answers on it.
import { file } from '../modules/file.js'
import { service, unitHandler } from '../modules/service.js'
import { vrrpGroupOf } from '../plan.js'
import type { Context, Playbook } from '../runner.js'
import type { Health } from './types.js'
import { renderFile } from '../template.js'
import { TEXTFILE_DIR } from './monitoring.js'

const NOTIFY = '/usr/local/lib/lab/vrrp-notify'
/** The one reader of keepalived's notify FIFO: hands each state change to NOTIFY in turn. */
const NOTIFY_READER = '/usr/local/lib/lab/vrrp-notify-fifo'
/** keepalived makes the FIFO itself (a tmpfs: gone at boot, as keepalived's state is). */
const NOTIFY_FIFO = '/run/keepalived-lab-notify.fifo'
/** Health checks failed in a row before a member gives the addresses up (one a second). */
const FALL = 2

/**
 * How often keepalived runs the health check, and how long one may take (seconds). Under
 * emulation (a VM without KVM: systemd-detect-virt says qemu) a process start costs a
 * second or more: a check of a few commands took 3 s there, always past a 1 s timeout,
 * and no member ever held the addresses. (The hub's health is no script any more for
 * that reason: hubWatchTimes.)
 */
export function checkTimes(ctx: Context): { intervalS: number; timeoutS: number } {
  return ctx.facts.virtualization === 'qemu' ? { intervalS: 2, timeoutS: 10 } : { intervalS: 1, timeoutS: 1 }
}

/**
 * The hub watch's rounds (lab-hub-watch): one a second; charon missing this many rounds
 * in a row gives the addresses up; a gap this long between two rounds was a sleep. Under
 * emulation a process start takes seconds and a round can be late by as much: charon is
 * given longer to come back and a gap must be longer to count.
 */
export function hubWatchTimes(ctx: Context): { periodS: number; fall: number; gapS: number } {
  return ctx.facts.virtualization === 'qemu' ? { periodS: 1, fall: 4, gapS: 10 } : { periodS: 1, fall: FALL, gapS: 4 }
}

/** The member's group in the plan (this role runs only on members). */
function groupOf(ctx: Context) {
  const g = vrrpGroupOf(ctx.plan, ctx.self.name)
  if (!g) throw new Error(`${ctx.self.name} is in no group (topology.yaml, groups): it gets no keepalived`)
  return g
}

const devOf = (ctx: Context, network: string) => {
  const dev = ctx.facts.interfaceOf[network]
  if (!dev) throw new Error(`${ctx.self.name} has no interface on ${network}, where its group's address is`)
  return dev
}

export function keepalivedConf(ctx: Context, health: Health): string {
  const g = groupOf(ctx)
  const me = g.members.find((m) => m.host === ctx.self.name)!
  return renderFile('vrrp/keepalived.conf', {
    host: ctx.self.name,
    group: g.name,
    service: health.service,
    check: 'check' in health ? health.check : '',
    file: 'file' in health ? health.file : '',
    fall: FALL,
    interval_s: checkTimes(ctx).intervalS,
    timeout_s: checkTimes(ctx).timeoutS,
    master_down_s: (3 + (256 - me.priority) / 256).toFixed(1),
    interface: devOf(ctx, g.network),
    vrid: g.vrid,
    priority: me.priority,
    address: me.address,
    peers: g.members.filter((m) => m !== me).map((m) => m.address),
    addresses: g.addresses.map((a) => ({ ...a, dev: devOf(ctx, a.network) })),
    fifo: NOTIFY_FIFO,
    fifo_reader: NOTIFY_READER,
  })
}

/** A group member's VRRP state for node exporter's textfile collector (written by the notify script). */
export const vrrpStateFile = (group: string) => `${TEXTFILE_DIR}/vrrp-${group}.prom`

/** systemd-tmpfiles' rule that removes the member's VRRP state at boot (it is that boot's alone). */
export const vrrpTmpfiles = (ctx: Context) =>
  renderFile('vrrp/tmpfiles.conf', { host: ctx.self.name, file: vrrpStateFile(groupOf(ctx).name) })

/** keepalived's notify script: the state for the monitor, and the role's takeover on becoming active. */
export const vrrpNotify = (ctx: Context, health: Health) =>
  renderFile('vrrp/vrrp-notify', { host: ctx.self.name, dir: TEXTFILE_DIR, takeover: health.takeover ?? '' })

/** The FIFO's reader: keepalived's state changes handed to the notify script one at a time. */
export const vrrpNotifyReader = (ctx: Context) =>
  renderFile('vrrp/vrrp-notify-fifo', { host: ctx.self.name, notify: NOTIFY })

/** keepalived's steps, with the health check of the member's role. */
export function vrrpPlaybook(health: (ctx: Context) => Health): Playbook {
  return {
    name: 'vrrp',
    steps: [
      file("Ensure the VRRP state the monitor reads is this boot's (removed at boot)", {
        path: '/etc/tmpfiles.d/lab-vrrp.conf',
        content: vrrpTmpfiles,
      }),
      file('Ensure the VRRP state reaches the monitor (keepalived notify)', {
        path: NOTIFY,
        mode: '0755',
        content: (ctx) => vrrpNotify(ctx, health(ctx)),
      }),
      // keepalived starts the reader, and a new one on a reload (seen: keepalived 2.2.7).
      file(
        "Ensure keepalived's state changes are handled in order (its notify FIFO's reader)",
        { path: NOTIFY_READER, mode: '0755', content: vrrpNotifyReader },
        ['reload keepalived'],
      ),
      file(
        "Ensure keepalived runs this member's VRRP instance, unicast to its peers",
        {
          path: '/etc/keepalived/keepalived.conf',
          content: (ctx) => keepalivedConf(ctx, health(ctx)),
          // -t alone: --config-test=X takes a log file, and would write its findings into X.
          validate: 'keepalived -t -f {}',
        },
        ['reload keepalived'],
      ),
      // Started here, it reads the files above: the reload they notified is moot, and one
      // a moment after the start lost keepalived's first state change (BACKUP, written to
      // the FIFO before an emulated VM's reader had opened it; the monitor saw the member
      // "not reporting" after a first provision, 7 Dec 2026).
      service('keepalived.service', { enabled: true, active: true, startMoots: ['reload keepalived'] }),
    ],
    // A reload keeps the instance's state: the active member stays active.
    handlers: [unitHandler('reload keepalived', 'reload', 'keepalived.service')],
  }
}

/** The member's firewall: VRRP adverts from its peers alone. */
export function vrrpInput(ctx: Context): string[] {
  const g = vrrpGroupOf(ctx.plan, ctx.self.name)
  if (!g) return []
  const peers = g.members.filter((m) => m.host !== ctx.self.name).map((m) => m.address)
  return [`ip saddr { ${peers.join(', ')} } ip protocol vrrp accept comment "VRRP adverts from group ${g.name}"`]
}

/** A member binds the virtual addresses before it holds them. */
export const vrrpSysctl = (ctx: Context): Record<string, string> =>
  vrrpGroupOf(ctx.plan, ctx.self.name) ? { 'net.ipv4.ip_nonlocal_bind': '1' } : {}
