// The base every host gets, whatever its role: packages, identity, time, access,
// kernel settings, the nftables baseline and the routes to the other sites. The
// role's own contributions (firewall rules, kernel settings) come from its module.
import { boxPackages } from '../box-packages.js'
import { converge } from '../modules/command.js'
import { file } from '../modules/file.js'
import { packages } from '../modules/packages.js'
import { commandHandler, service, unitHandler } from '../modules/service.js'
import type { Context, Playbook } from '../runner.js'
import { sh } from '../ssh.js'
import { renderFile } from '../template.js'
import { roleModule } from './registry.js'
import { MONITOR_PORTS } from '../ports.js'
import { TEXTFILE_DIR, monitorInput } from './monitoring.js'
import { vrrpInput, vrrpSysctl } from './vrrp.js'

/** Kernel settings every host gets; a role adds or overrides (gateways forward). */
export function sysctlSettings(ctx: Context): Record<string, string> {
  return {
    'net.ipv4.ip_forward': '0',
    'net.ipv4.conf.all.rp_filter': '1',
    'net.ipv4.conf.default.rp_filter': '1',
    'net.ipv4.conf.all.accept_redirects': '0',
    'net.ipv4.conf.all.send_redirects': '0',
    'net.ipv4.conf.all.accept_source_route': '0',
    // IPv6 off: the lab is IPv4; router solicitations would leak onto its networks.
    'net.ipv6.conf.all.disable_ipv6': '1',
    'net.ipv6.conf.default.disable_ipv6': '1',
    ...roleModule(ctx.self.role).sysctl?.(ctx),
    ...vrrpSysctl(ctx),
  }
}

/** A LAN's gateway answers for the LAN's old server address (it DNATs it onward). */
function oldServerAddresses(ctx: Context): { address: string; dev: string }[] {
  return ctx.plan.networks
    .filter((n) => n.gateway === ctx.self.name && n.oldServer)
    .map((n) => ({ address: n.oldServer!.address, dev: ctx.facts.interfaceOf[n.name] }))
}

const SYSCTL_FILE = '/etc/sysctl.d/60-lab.conf'
/** The routing protocol number the lab's own routes carry (lab-network.service), so stale ones can be found. */
const LAB_ROUTE_PROTO = 91
const NETWORK_UNIT = '/etc/systemd/system/lab-network.service'
const NO_IPV6_DROPIN = '60-lab-no-ipv6.conf'

/**
 * IPv6 off on each of the host's links, and kept off: net.ipv6.conf.all reaches only the
 * links that exist when it is set, and systemd-networkd (a VM's links, from Vagrant's
 * 50-vagrant-*.network) turns IPv6 back on for a link it configures at boot, for its
 * link-local address. Seen: a VM restarted hard came back with fe80:: addresses. So each
 * link networkd manages gets a drop-in to its own .network file (no link-local, no RA),
 * and every link's disable_ipv6 is checked, not only `all`. The drop-in acts from the
 * next boot on (no `networkctl reload`: reconfiguring a link could drop the addresses
 * keepalived put on it); the sysctl acts now. Containers' links are networkd's to none:
 * there the sysctl alone.
 */
function ipv6Off(ctx: Context, what: 'check' | 'fix'): string {
  const devs = [...new Set(Object.values(ctx.facts.interfaceOf))]
  const bad = devs.find((d) => !/^[\w.@-]+$/.test(d))
  if (bad) throw new Error(`${ctx.self.name}: interface name ${JSON.stringify(bad)} is not one this step can use`)
  const conf = `"$f.d/${NO_IPV6_DROPIN}"`
  return devs
    .map((dev) => {
      const file = `f=$(networkctl status --no-pager ${dev} 2>/dev/null | sed -n 's|^ *Network File: \\(/.*\\)$|\\1|p')`
      return what === 'check'
        ? `(${file}; { [ -z "$f" ] || [ -f ${conf} ]; } && [ "$(cat /proc/sys/net/ipv6/conf/${dev}/disable_ipv6)" = 1 ])`
        : `(${file}; if [ -n "$f" ] && [ ! -f ${conf} ]; then mkdir -p "$f.d" && printf '%s\\n' '[Network]' LinkLocalAddressing=no IPv6AcceptRA=no > ${conf} || exit 1; fi; sysctl -q -w net.ipv6.conf.${dev}.disable_ipv6=1)`
    })
    .join(' && ')
}

export const common: Playbook = {
  name: 'common',
  steps: [
    packages("Ensure the lab's Debian packages are installed", boxPackages()),

    converge(
      "Ensure the hostname is the topology's name",
      async (ctx) => (await ctx.host.exec('hostname')).stdout.trim() === ctx.self.name,
      async (ctx) => {
        await ctx.host.exec(sh`hostname ${ctx.self.name} && echo ${ctx.self.name} > /etc/hostname`)
      },
    ),

    file('Ensure /etc/hosts names every lab host', {
      path: '/etc/hosts',
      content: (ctx) =>
        renderFile('common/hosts', {
          host: ctx.self.name,
          entries: ctx.plan.hosts.flatMap((h) =>
            h.interfaces
              .filter((i) => i.network !== h.mgmt.network)
              .map((i) => ({ address: i.address, name: `${h.name}.${i.network}` })),
          ),
        }),
    }),

    file('Ensure /etc/lab/host.json describes this host', {
      path: '/etc/lab/host.json',
      content: (ctx) =>
        JSON.stringify(
          { name: ctx.self.name, role: ctx.self.role, interfaces: ctx.self.interfaces, routes: ctx.self.routes },
          null,
          2,
        ) + '\n',
    }),

    converge(
      'Ensure the timezone is UTC',
      async (ctx) =>
        (await ctx.host.exec('readlink /etc/localtime', { check: false })).stdout.trim() ===
        '/usr/share/zoneinfo/Etc/UTC',
      async (ctx) => {
        await ctx.host.exec('ln -sfn /usr/share/zoneinfo/Etc/UTC /etc/localtime && echo Etc/UTC > /etc/timezone')
      },
    ),

    converge(
      'Ensure root has no password login',
      async (ctx) => /^root (L|NP) /.test((await ctx.host.exec('passwd -S root')).stdout),
      async (ctx) => {
        await ctx.host.exec('passwd -l root')
      },
    ),

    file(
      'Ensure sshd admits keys only',
      { path: '/etc/ssh/sshd_config.d/lab.conf', content: renderFile('common/sshd.conf', {}) },
      ['reload ssh'],
    ),

    file('Ensure kernel settings are persistent', {
      path: SYSCTL_FILE,
      content: (ctx) =>
        renderFile('common/sysctl.conf', {
          role: ctx.self.role,
          settings: Object.entries(sysctlSettings(ctx)).map(([key, value]) => ({ key, value })),
        }),
    }),

    converge(
      'Ensure kernel settings are live',
      async (ctx) => {
        const settings = sysctlSettings(ctx)
        const r = await ctx.host.exec(sh`sysctl -n ${Object.keys(settings)}`)
        return r.stdout
          .trim()
          .split('\n')
          .every((v, i) => v.trim() === Object.values(settings)[i])
      },
      async (ctx) => {
        await ctx.host.exec(sh`sysctl -q -p ${SYSCTL_FILE}`)
      },
    ),

    converge(
      "Ensure IPv6 stays off on the lab's links, across a reboot too",
      async (ctx) => (await ctx.host.exec(ipv6Off(ctx, 'check'), { check: false })).code === 0,
      async (ctx) => {
        await ctx.host.exec(ipv6Off(ctx, 'fix'))
      },
    ),

    file(
      "Ensure the nftables policy admits only this role's traffic",
      {
        path: '/etc/nftables.conf',
        mode: '0755',
        validate: 'nft -c -f {}',
        content: (ctx) => nftablesConf(ctx),
      },
      ['reload nftables'],
    ),
    service('nftables.service', { enabled: true, active: true }),

    file(
      "Ensure routes to the other sites go through this LAN's gateway",
      {
        path: NETWORK_UNIT,
        content: (ctx) =>
          renderFile('common/lab-network.service', {
            routes: ctx.self.routes,
            addresses: oldServerAddresses(ctx),
            proto: LAB_ROUTE_PROTO,
          }),
      },
      ['restart lab-network'],
    ),
    service('lab-network.service', { enabled: true, active: true }),

    // Every host is watched: node exporter on its LAN address, for the monitor.
    file(
      "Ensure node exporter listens on this host's LAN address, for the monitor",
      {
        path: '/etc/default/prometheus-node-exporter',
        content: (ctx) =>
          renderFile('monitor/node-exporter.default', {
            host: ctx.self.name,
            address: ctx.self.lanAddress ?? '127.0.0.1',
            port: MONITOR_PORTS.node,
            textfile_dir: TEXTFILE_DIR,
          }),
      },
      ['restart node exporter'],
    ),
    service('prometheus-node-exporter.service', { enabled: true, active: true }),
  ],
  handlers: [
    unitHandler('reload ssh', 'reload', 'ssh', { check: 'sshd -t' }),
    commandHandler('reload nftables', 'nft -f /etc/nftables.conf'),
    unitHandler('restart node exporter', 'restart', 'prometheus-node-exporter.service'),
    unitHandler('restart lab-network', 'restart', 'lab-network.service', { daemonReload: true }),
  ],
}

/** A host's nftables ruleset: the baseline with its role's input, forward and NAT rules (golden files in test/unit/rendered.ts). */
export function nftablesConf(ctx: Context): string {
  const mod = roleModule(ctx.self.role)
  return renderFile('common/nftables.conf', {
    host: ctx.self.name,
    role: ctx.self.role,
    mgmt_if: ctx.facts.mgmtInterface,
    input_rules: [...monitorInput(ctx.plan, ctx.self), ...(mod.input?.(ctx) ?? []), ...vrrpInput(ctx)],
    forward_rules: mod.forward?.(ctx) ?? [],
    nat_rules: mod.nat?.(ctx) ?? [],
  })
}
