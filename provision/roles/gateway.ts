// Role gateway: strongSwan (charon-systemd, configured with swanctl; `ipsec statusall`
// works too through the stroke plugin), one site-to-site tunnel per IoT site with
// strict proposals, X.509 from the lab CA with revocation enforced (or a generated
// PSK), the data path the kernel allows, and a firewall that admits only IKE and ESP
// from the peer on the internet side and forwards only between the sites' subnets.
import { converge } from '../modules/command.js'
import { absent, ensureFileContent, file } from '../modules/file.js'
import { commandHandler, service, unitHandler } from '../modules/service.js'
import { onlyIf } from '../modules/only-if.js'
import { ikeIdentity, issueCert } from '../pki.js'
import { certificateSteps } from './certificate.js'
import type { Context, Step } from '../runner.js'
import { secret } from '../secrets.js'
import { sh } from '../ssh.js'
import { renderFile } from '../template.js'
import { vrrpGroupOf, type Tunnel } from '../plan.js'
import type { RoleModule } from './types.js'
import { TEXTFILE_DIR } from './monitoring.js'
import { hubWatchTimes } from './vrrp.js'
import { bundle } from '../../services/build.js'

/**
 * How soon a silent peer is given up (charon-timers.conf): DPD after DPD_S seconds
 * without a packet from it, then retransmissions at TIMEOUT_S x BASE^n, TRIES of them.
 */
export const IKE_TIMERS = { dpdS: 2, timeoutS: 1, base: 1.3, tries: 3 }
/** Seconds from the first unanswered DPD to giving the peer up: the sum of every wait. */
export const giveUpSeconds = (t = IKE_TIMERS) =>
  Array.from({ length: t.tries + 1 }, (_, n) => t.timeoutS * t.base ** n).reduce((a, b) => a + b, 0)

export const timersConf = () =>
  renderFile('gateway/charon-timers.conf', {
    timeout_s: IKE_TIMERS.timeoutS,
    base: IKE_TIMERS.base,
    tries: IKE_TIMERS.tries,
    dpd_s: IKE_TIMERS.dpdS,
    giveup_s: giveUpSeconds().toFixed(1),
  })

/** charon's IKE SA hash table (charon-ike-sa-table.conf): buckets and locks, powers of two. */
export const IKE_SA_TABLE = { size: 1024, segments: 16 }

/** The only algorithms either side accepts (DESIGN.md, decision 5). */
export const IKE_PROPOSALS = 'chacha20poly1305-prfsha512-curve25519'
export const ESP_PROPOSALS = 'chacha20poly1305-curve25519'

const SWANCTL = '/etc/swanctl'
const HUB_WATCH = '/usr/local/lib/lab/lab-hub-watch'
/** The hub pair member's health for keepalived (track_file): 0 while it may hold the addresses. */
export const HUB_HEALTH_FILE = '/run/lab-hub-health'
const HUB_TAKEOVER = '/usr/local/lib/lab/lab-hub-takeover'
/** charon's pid, written by strongswan-service.conf's drop-in: `ipsec statusall` and the hub watch read it. */
const CHARON_PID = '/run/charon.pid'
const keyFile = (host: string) => `${SWANCTL}/private/${host}.key`
const certFile = (host: string) => `${SWANCTL}/x509/${host}.pem`

/** This gateway's tunnels, seen from its own side (a hub pair's member runs the hub's). */
export function tunnelsOf(ctx: Context): (Tunnel & { isHub: boolean })[] {
  return (ctx.plan.vpn?.tunnels ?? [])
    .filter((t) => t.site === ctx.self.name || t.hubMembers.includes(ctx.self.name))
    .map((t) => ({ ...t, isHub: t.hubMembers.includes(ctx.self.name) }))
}

/** The name this gateway authenticates as: its own, or its hub pair's. */
export const identityName = (ctx: Context) =>
  ctx.plan.vpn?.tunnels.find((t) => t.hubMembers.includes(ctx.self.name))?.hub ?? ctx.self.name

const pubkey = (ctx: Context) => ctx.plan.vpn?.auth !== 'psk'
const mode = (ctx: Context) => ctx.facts.ipsecMode ?? 'libipsec'
const wanIf = (ctx: Context, t: Tunnel) => ctx.facts.interfaceOf[t.network]

/** The tunnel's PSK: 256 bits from the CSPRNG, made once, kept 0600 on this machine. */
const psk = (ctx: Context, tunnel: string) => secret(ctx.stateDir, `psk-${tunnel}`, 32, 'base64')

export function swanctlVars(ctx: Context, withPsk = false) {
  const id = (h: string) => ikeIdentity(ctx.plan.name, h)
  return {
    host: ctx.self.name,
    auth: pubkey(ctx) ? 'pubkey' : 'psk',
    pubkey: pubkey(ctx),
    cert_file: `${ctx.self.name}.pem`,
    ike_proposals: IKE_PROPOSALS,
    dpd_delay: `${IKE_TIMERS.dpdS}s`,
    esp_proposals: ESP_PROPOSALS,
    tunnels: tunnelsOf(ctx).map((t) => ({
      name: t.name,
      local_addr: t.isHub ? t.hubAddress : t.siteAddress,
      remote_addr: t.isHub ? t.siteAddress : t.hubAddress,
      local_id: id(t.isHub ? t.hub : t.site),
      remote_id: id(t.isHub ? t.site : t.hub),
      local_ts: (t.isHub ? t.hubSubnets : t.siteSubnets).join(','),
      remote_ts: (t.isHub ? t.siteSubnets : t.hubSubnets).join(','),
      // The site initiates and keeps the tunnel up; the hub answers and, when a site
      // goes silent, clears its SAs.
      start_action: t.isHub ? 'none' : 'start',
      dpd_action: t.isHub ? 'clear' : 'restart',
      close_action: t.isHub ? 'none' : 'start',
      ...(withPsk ? { psk: psk(ctx, t.name) } : {}),
    })),
  }
}

/** The gateway's IKE identity from the lab CA (X.509, the default), each step only where pubkey is used. */
const identitySteps: Step[] = certificateSteps({
  ca: 'ike',
  caCert: `${SWANCTL}/x509ca/lab-ca.pem`,
  crl: `${SWANCTL}/x509crl/lab.crl`,
  key: keyFile,
  cert: certFile,
  owner: 'root',
  keygen: (out) => sh`pki --gen --type ed25519 --outform pem > ${out}`,
  publicKey: (key) => sh`pki --pub --in ${key} --outform pem 2>/dev/null`,
  issue: (ctx, p, pub) => issueCert(p, ctx.plan.name, ctx.self.name, pub, identityName(ctx)),
  // A host that joins or leaves a hub pair changes identity: its certificate is reissued.
  more: (ctx, info) => info.altNames.includes(ikeIdentity(ctx.plan.name, identityName(ctx))),
  names: {
    ca: 'Ensure the lab CA certificate is trusted',
    crl: 'Ensure the current CRL is installed',
    key: 'Ensure the gateway has its own private key',
    cert: "Ensure the gateway's certificate is from the lab CA, for its own key, and not revoked",
  },
  what: 'certificate',
  notify: ['reload swanctl'],
}).map((step) => onlyIf(pubkey, step))

/**
 * The IPsec data path the kernel allows (userspace ESP where it has none) and how soon
 * a silent peer is given up: every charon of the lab's, a gateway's and a site farm's.
 */
export const charonSteps: Step[] = [
  file(
    'Ensure kernel-libipsec is loaded only where the kernel has no ESP',
    {
      path: '/etc/strongswan.d/charon/kernel-libipsec.conf',
      content: (ctx) =>
        renderFile('gateway/kernel-libipsec.conf', { mode: mode(ctx), load: mode(ctx) === 'libipsec' ? 'yes' : 'no' }),
    },
    ['restart strongswan'],
  ),

  file(
    "Ensure charon finds an IKE message's SA in a hash table, not a list",
    {
      path: '/etc/strongswan.d/lab-ike-sa-table.conf',
      content: renderFile('gateway/charon-ike-sa-table.conf', IKE_SA_TABLE),
    },
    ['restart strongswan'],
  ),

  file(
    "Ensure charon's journal has every setup and failure, not every packet",
    {
      path: '/etc/strongswan.d/lab-log.conf',
      content: renderFile('gateway/charon-log.conf', { dpd_s: IKE_TIMERS.dpdS }),
    },
    ['restart strongswan'],
  ),

  file(
    'Ensure a silent peer is given up in seconds, not minutes',
    {
      path: '/etc/strongswan.d/lab-timers.conf',
      content: timersConf(),
    },
    ['restart strongswan'],
  ),
]

const steps: Step[] = [
  converge(
    'Ensure this gateway records its IPsec data path',
    async (ctx) => (await ctx.host.exec('cat /etc/lab/ipsec-mode', { check: false })).stdout.trim() === mode(ctx),
    async (ctx) => {
      await ctx.host.exec(sh`mkdir -p /etc/lab && echo ${mode(ctx)} > /etc/lab/ipsec-mode`)
    },
  ),
  ...charonSteps,

  // X.509 (the default): the CA key stays on the provisioning machine; the gateway
  // makes its own key, and only its public key travels.
  ...identitySteps,

  // PSK, where the topology asks for it: only the gateways have it, in a 0600 file.
  {
    name: 'Ensure the pre-shared keys are installed where PSK is used, and only there',
    notify: ['reload swanctl'],
    async run(ctx) {
      const f = `${SWANCTL}/conf.d/lab-secrets.conf`
      if (pubkey(ctx)) return absent('', f).run(ctx)
      return ensureFileContent(ctx, {
        path: f,
        mode: '0600',
        content: renderFile('gateway/secrets.conf', swanctlVars(ctx, true)),
      })
    },
  },

  file(
    'Ensure the tunnels are configured with strict proposals',
    {
      path: `${SWANCTL}/conf.d/lab.conf`,
      content: (ctx) => renderFile('gateway/swanctl.conf', swanctlVars(ctx)),
    },
    ['reload swanctl'],
  ),
  {
    name: "Ensure the hub serves the topology's site farm with one connection, and only where there is one",
    notify: ['reload swanctl'],
    async run(ctx) {
      const f = `${SWANCTL}/conf.d/lab-farm.conf`
      const farm = farmOf(ctx)
      if (!farm) return absent('', f).run(ctx)
      const v = swanctlVars(ctx)
      const hub = tunnelsOf(ctx).find((t) => t.isHub)!
      return ensureFileContent(ctx, {
        path: f,
        content: renderFile('gateway/swanctl-farm.conf', {
          ...v,
          farm_host: farm.host,
          hub_address: farm.hubAddress,
          wan: farm.wan,
          lans: farm.lans,
          local_id: ikeIdentity(ctx.plan.name, identityName(ctx)),
          id: farmIdentity(ctx.plan.name, '*'),
          local_ts: hub.hubSubnets.join(','),
        }),
      })
    },
  },
  file(
    'Ensure `ipsec statusall` can find charon',
    {
      path: '/etc/systemd/system/strongswan.service.d/lab.conf',
      content: (ctx) =>
        renderFile('gateway/strongswan-service.conf', { pid: CHARON_PID, takeover: isHub(ctx) ? HUB_TAKEOVER : '' }),
    },
    ['restart strongswan'],
  ),
  file('Ensure swanctl loads only the plugins it needs (no warnings)', {
    path: '/etc/strongswan.d/lab-clients.conf',
    content: renderFile('gateway/swanctl-plugins.conf', {}),
  }),
  service('strongswan.service', { enabled: true, active: true }),

  // Sites only: the keeper that wins the start race.
  onlyIf(
    isSite,
    file(
      'Ensure the tunnel keeper is installed',
      {
        path: '/usr/local/sbin/lab-ipsec-keeper',
        mode: '0755',
        content: renderFile('gateway/lab-ipsec-keeper', {}),
      },
      ['restart keeper'],
    ),
  ),
  onlyIf(
    isSite,
    file(
      'Ensure the tunnel keeper unit',
      {
        path: '/etc/systemd/system/lab-ipsec-keeper.service',
        content: (ctx) => renderFile('gateway/lab-ipsec-keeper.service', { conn: tunnelsOf(ctx)[0].name }),
      },
      ['restart keeper'],
    ),
  ),
  onlyIf(isSite, service('lab-ipsec-keeper.service', { enabled: true, active: true })),

  // The hub: the takeover (charon's start runs it; in a pair, keepalived too), and in a
  // pair the watch that keeps the member's health for keepalived.
  onlyIf(
    inHubPair,
    file(
      'Ensure the hub pair member watches its own health (charon runs, its certificate not revoked)',
      { path: HUB_WATCH, mode: '0755', content: (ctx) => hubWatch(ctx) },
      ['restart hub watch'],
    ),
  ),
  onlyIf(
    inHubPair,
    file(
      'Ensure the hub pair health watch unit',
      {
        path: '/etc/systemd/system/lab-hub-watch.service',
        content: (ctx) => renderFile('gateway/lab-hub-watch.service', { ...hubVars(ctx), watch: HUB_WATCH }),
      },
      ['restart hub watch'],
    ),
  ),
  onlyIf(inHubPair, service('lab-hub-watch.service', { enabled: true, active: true })),
  onlyIf(
    isHub,
    file("Ensure the hub initiates every site's tunnel at once when it may have lost them", {
      path: HUB_TAKEOVER,
      mode: '0755',
      content: (ctx) => renderFile('gateway/lab-hub-takeover', hubVars(ctx)),
    }),
  ),

  // For the monitor: the SAs and their traffic, through node exporter's textfile collector.
  file(
    "Ensure the IPsec metrics writer's code is the current bundle",
    {
      path: '/usr/local/lib/lab/lab-ipsec-metrics.cjs',
      content: () => bundle('ipsec-metrics'),
    },
    ['restart ipsec metrics'],
  ),
  file(
    'Ensure the IPsec metrics writer unit',
    {
      path: '/etc/systemd/system/lab-ipsec-metrics.service',
      content: (ctx) =>
        renderFile('gateway/lab-ipsec-metrics.service', {
          dir: TEXTFILE_DIR,
          host: ctx.self.name,
          side: identityName(ctx),
          mode: mode(ctx),
        }),
    },
    ['restart ipsec metrics'],
  ),
  service('lab-ipsec-metrics.service', { enabled: true, active: true }),
]

/** The topology's site farm, where this gateway serves it (a hub member; pubkey only). */
const farmOf = (ctx: Context) =>
  pubkey(ctx) && ctx.plan.siteFarm?.hubMembers.includes(ctx.self.name) ? ctx.plan.siteFarm : undefined

/** A farm site's IKE identity (the hub accepts the whole domain: `*`). */
export const farmIdentity = (labName: string, site: string) => `${site}.farm.${labName}`

/** An internet side that admits IKE and ESP from these peers (addresses or ranges) and drops the rest, counted. */
export function ikeOnlyFrom(dev: string, peers: string[]): string[] {
  const set = `{ ${peers.join(', ')} }`
  return [
    `iifname "${dev}" ip saddr ${set} udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"`,
    `iifname "${dev}" ip saddr ${set} meta l4proto esp accept comment "ESP"`,
    `iifname "${dev}" counter drop comment "internet side: nothing else"`,
  ]
}

function isSite(ctx: Context) {
  return tunnelsOf(ctx).some((t) => !t.isHub)
}

/** The hub, alone or as a member of its pair. */
function isHub(ctx: Context) {
  return tunnelsOf(ctx).some((t) => t.isHub)
}

/** A member of a hub pair (keepalived moves the hub's addresses between them, vrrp.ts). */
function inHubPair(ctx: Context) {
  return (ctx.plan.vpn?.tunnels ?? []).some((t) => t.hubMembers.length > 1 && t.hubMembers.includes(ctx.self.name))
}

/** The hub pair member's health watch (lab-hub-watch), as the member gets it. */
export const hubWatch = (ctx: Context) => renderFile('gateway/lab-hub-watch', hubVars(ctx))

function hubVars(ctx: Context) {
  const watch = hubWatchTimes(ctx)
  return {
    host: ctx.self.name,
    hub: identityName(ctx),
    pubkey: pubkey(ctx),
    cert: certFile(ctx.self.name),
    ca: `${SWANCTL}/x509ca/lab-ca.pem`,
    crl: `${SWANCTL}/x509crl/lab.crl`,
    // conn=address: the takeover initiates a tunnel only where this host holds its hub address.
    conns: tunnelsOf(ctx)
      .filter((t) => t.isHub)
      .map((t) => `${t.name}=${t.hubAddress}`)
      .join(' '),
    vip: tunnelsOf(ctx).find((t) => t.isHub)?.hubAddress ?? '',
    takeover: HUB_TAKEOVER,
    giveup_s: (IKE_TIMERS.dpdS + giveUpSeconds()).toFixed(1),
    // The watch's rounds (hubWatchTimes): a gap past a few of them is a sleep (a freeze),
    // not a busy host. Two masters then: the higher priority stays (RFC 5798 6.4.3), so it
    // takes the sites over at once; another waits for VRRP to settle (its first advert
    // from the higher) and takes them only if it still holds the addresses.
    out: HUB_HEALTH_FILE,
    verified: '/run/lab-hub-cert.verified',
    fifo: '/run/lab-hub-watch.fifo',
    charon_pid: CHARON_PID,
    vici: '/run/charon.vici',
    period_s: watch.periodS,
    fall: watch.fall,
    gap_s: watch.gapS,
    settle_s: highestInPair(ctx) ? 0 : 1.5,
  }
}

/** Whether this member has the highest VRRP priority of its pair (it wins two masters). */
function highestInPair(ctx: Context): boolean {
  const members = vrrpGroupOf(ctx.plan, ctx.self.name)?.members ?? []
  const me = members.find((m) => m.host === ctx.self.name)
  return !!me && me.priority === Math.max(...members.map((m) => m.priority))
}

export const gateway: RoleModule = {
  role: {
    name: 'gateway',
    steps,
    handlers: [
      unitHandler('restart strongswan', 'restart', 'strongswan.service', { daemonReload: true }),
      commandHandler('reload swanctl', 'swanctl --load-all --clear --noprompt >/dev/null'),
      unitHandler('restart ipsec metrics', 'restart', 'lab-ipsec-metrics.service', { daemonReload: true }),
      unitHandler('restart keeper', 'restart', 'lab-ipsec-keeper.service', { daemonReload: true }),
      unitHandler('restart hub watch', 'restart', 'lab-hub-watch.service', { daemonReload: true }),
    ],
  },

  sysctl: () => ({ 'net.ipv4.ip_forward': '1' }),

  // In the hub pair: charon runs and this member's certificate stands, or it gives the addresses up.
  health: () => ({ service: 'charon', file: HUB_HEALTH_FILE, takeover: HUB_TAKEOVER }),

  /** Internet side: IKE and ESP from the peer only; all else there is dropped and counted. */
  input(ctx) {
    const rules: string[] = []
    const byIf = new Map<string, string[]>()
    for (const t of tunnelsOf(ctx)) {
      const dev = wanIf(ctx, t)
      byIf.set(dev, [...(byIf.get(dev) ?? []), t.isHub ? t.siteAddress : t.hubAddress])
    }
    const farm = farmOf(ctx)
    if (farm) {
      const dev = ctx.facts.interfaceOf[farm.network]
      byIf.set(dev, [...(byIf.get(dev) ?? []), farm.wan])
    }
    for (const [dev, peers] of byIf) rules.push(...ikeOnlyFrom(dev, peers))
    return rules
  },

  /** Forward only between the sites' subnets, and only through the tunnel. */
  forward(ctx) {
    const rules: string[] = []
    for (const t of tunnelsOf(ctx)) {
      const local = `{ ${(t.isHub ? t.hubSubnets : t.siteSubnets).join(', ')} }`
      const remote = `{ ${(t.isHub ? t.siteSubnets : t.hubSubnets).join(', ')} }`
      if (mode(ctx) === 'libipsec') {
        rules.push(`iifname "ipsec0" ip saddr ${remote} ip daddr ${local} accept comment "${t.name}: from the tunnel"`)
        rules.push(`oifname "ipsec0" ip saddr ${local} ip daddr ${remote} accept comment "${t.name}: into the tunnel"`)
      } else {
        rules.push(
          `meta secpath exists ip saddr ${remote} ip daddr ${local} accept comment "${t.name}: decrypted from the tunnel"`,
        )
        rules.push(`rt ipsec exists ip saddr ${local} ip daddr ${remote} accept comment "${t.name}: into the tunnel"`)
      }
    }
    return rules
  },

  /** The old server address: DNAT its ports to the host that now serves it. */
  nat(ctx) {
    return ctx.plan.networks
      .filter((n) => n.gateway === ctx.self.name && n.oldServer)
      .map((n) => {
        const o = n.oldServer!
        return `iifname "${ctx.facts.interfaceOf[n.name]}" ip daddr ${o.address} tcp dport { ${o.ports.join(', ')} } dnat ip to ${o.target} comment "old server: now ${o.host}, through the tunnel"`
      })
  },
}
