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
import { renderFile } from '../template.js'
import { TEXTFILE_DIR } from './monitoring.js'

const NOTIFY = '/usr/local/lib/lab/vrrp-notify'
/** Health checks failed in a row before a member gives the addresses up (one a second). */
const FALL = 2

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

export function keepalivedConf(ctx: Context, health: { service: string; check: string }): string {
  const g = groupOf(ctx)
  const me = g.members.find((m) => m.host === ctx.self.name)!
  return renderFile('vrrp/keepalived.conf', {
    host: ctx.self.name,
    group: g.name,
    service: health.service,
    check: health.check,
    fall: FALL,
    master_down_s: (3 + (256 - me.priority) / 256).toFixed(1),
    interface: devOf(ctx, g.network),
    vrid: g.vrid,
    priority: me.priority,
    address: me.address,
    peers: g.members.filter((m) => m !== me).map((m) => m.address),
    addresses: g.addresses.map((a) => ({ ...a, dev: devOf(ctx, a.network) })),
    notify: NOTIFY,
  })
}

/** keepalived's steps, with the health check of the member's role. */
export function vrrpPlaybook(health: (ctx: Context) => { service: string; check: string }): Playbook {
  return {
    name: 'vrrp',
    steps: [
      file('Ensure the VRRP state reaches the monitor (keepalived notify)', {
        path: NOTIFY,
        mode: '0755',
        content: (ctx) => renderFile('vrrp/vrrp-notify', { host: ctx.self.name, dir: TEXTFILE_DIR }),
      }),
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
      service('keepalived.service', { enabled: true, active: true }),
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
