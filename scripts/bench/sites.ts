// What the hub costs per IoT site (issue 20, "many sites, cheaply, for real"): a site
// farm (one container whose charon carries N sites, each with its own outer address in
// 198.18.0.0/15, its own identity and certificate from the lab CA and its own /24 LAN
// as traffic selectors) is added to a copy of the topology, against the real hub, which
// serves all of them with one connection (provision/roles/gateway.ts). For each N: the
// time for all N to come up from nothing (IKE setups per second, against the hub's own
// `openssl speed` of X25519 and Ed25519 in the same run), charon's memory on the hub,
// its CPU with every site idle (DPD), the time for all N to be back after a graceful
// and a crashed restart of the hub's charon, and its CPU per 1000 readings of the lab's
// own site with its tunnel set up first, then last. The lab's own sites keep working
// beside the farm; the lab is put back after (topology-copy.ts).
import fs from 'node:fs'
import { parse } from 'yaml'
import { clientOf, farmCapacity, hostsWithRole, type Plan, type SiteFarm } from '../../provision/plan.js'
import { formatAddress, parseCidr } from '../../provision/lib/ipv4.js'
import { waitFor } from '../../provision/lib/wait.js'
import { farmCredentials, ikeIdentity, pkiPaths } from '../../provision/pki.js'
import { stateDir, topologyFile } from '../../provision/paths.js'
import { ESP_PROPOSALS, IKE_PROPOSALS, IKE_TIMERS, farmIdentity } from '../../provision/roles/gateway.js'
import { providerOps } from '../lib/providers.js'
import { hostCpuSeconds, procCpu } from './cpu.js'
import { drawable, fitLine, type Curve, type LineFit } from './curve.js'
import { runScenario, type LoadOptions } from './ingest.js'
import type { BenchLab } from './lab.js'
import { freeAddress, usedAddresses, withTopologyCopy, type RawTopology } from './topology-copy.js'

/** The farm's ranges: the benchmarking range (RFC 2544) for outer addresses, a /9 of 10/8 for LANs. */
export const FARM_RANGES = { wan: '198.18.0.0/15', lans: '10.128.0.0/9' }
export const FARM_HOST = 'site-farm'

/**
 * The topology with a site farm: a host of role site-farm on the hub's wan network (the
 * highest free address of each network it is on) and the site_farm block. Pure.
 */
export function withSiteFarm(raw: RawTopology, plan: Plan): { raw: RawTopology; host: string } {
  const hub = plan.vpn?.tunnels[0]
  if (!hub) throw new Error('the sites curve needs a hub and at least one IoT site (vpn) in the topology')
  if (raw.hosts[FARM_HOST]) throw new Error(`the topology already has a host named ${FARM_HOST}`)
  const used = usedAddresses(plan)
  const mgmt = plan.networks.find((n) => n.kind === 'management')!
  const out = structuredClone(raw)
  out.hosts[FARM_HOST] = {
    role: 'site-farm',
    interfaces: {
      [mgmt.name]: freeAddress(plan, mgmt.name, FARM_HOST, used),
      [hub.network]: freeAddress(plan, hub.network, FARM_HOST, used),
    },
  }
  out.site_farm = { host: FARM_HOST, ...FARM_RANGES }
  return { raw: out, host: FARM_HOST }
}

export interface FarmSite {
  index: number
  /** Its connection's name on the farm. */
  name: string
  id: string
  address: string
  lan: string
  /** The site's own address on its LAN (the first): where its traffic comes from. */
  lanAddress: string
}

/**
 * Slot i (from 1) of a farm's ranges: the i-th address of its wan range, the i-th /24 of
 * its LANs, and the LAN's first address.
 */
export function farmSlot(
  ranges: Pick<SiteFarm, 'wan' | 'lans'>,
  i: number,
): Pick<FarmSite, 'address' | 'lan' | 'lanAddress'> {
  if (!Number.isInteger(i) || i < 1 || i > farmCapacity(ranges))
    throw new Error(`site ${i}: the farm's ranges hold sites 1 to ${farmCapacity(ranges)}`)
  const wan = parseCidr(ranges.wan)!
  const lans = parseCidr(ranges.lans)!
  return {
    address: formatAddress(wan.network + i),
    lan: `${formatAddress(lans.network + i * 256)}/24`,
    lanAddress: formatAddress(lans.network + i * 256 + 1),
  }
}

/** Site i (from 1) of the farm: its slot, its name and its identity. */
export function farmSite(farm: SiteFarm, labName: string, i: number): FarmSite {
  const slot = farmSlot(farm, i)
  const name = `s${String(i).padStart(4, '0')}`
  return { index: i, name, id: farmIdentity(labName, name), ...slot }
}

/**
 * The farm's swanctl connections for these sites: each as a lab site is configured
 * (the same proposals and timers), starting at once when loaded, restarting after DPD.
 */
export function farmConf(sites: FarmSite[], farm: SiteFarm, hubId: string, hubSubnets: string[]): string {
  const conns = sites.map(
    (s) => `  ${s.name} {
    version = 2
    local_addrs = ${s.address}
    remote_addrs = ${farm.hubAddress}
    proposals = ${IKE_PROPOSALS}
    dpd_delay = ${IKE_TIMERS.dpdS}s
    rekey_time = 4h
    keyingtries = 0
    mobike = no
    local {
      auth = pubkey
      id = ${s.id}
      certs = ${s.name}.pem
    }
    remote {
      auth = pubkey
      id = ${hubId}
      cacerts = lab-ca.pem
    }
    children {
      ${s.name} {
        local_ts = ${s.lan}
        remote_ts = ${hubSubnets.join(',')}
        esp_proposals = ${ESP_PROPOSALS}
        rekey_time = 1h
        dpd_action = restart
        start_action = start
        close_action = start
      }
    }
  }
`,
  )
  return `# Written by npm run bench -- --sites-curve: ${sites.length} sites.\nconnections {\n${conns.join('')}}\n`
}

/** X25519 derivations and Ed25519 signatures and verifications per second, from `openssl speed`. */
export interface CryptoSpeed {
  x25519: number
  ed25519_sign: number
  ed25519_verify: number
  /**
   * IKE setups a responder's core could do if it did nothing but their public-key
   * cryptography: per setup, two X25519 operations (its key pair, the shared secret),
   * one Ed25519 signature (its AUTH) and two verifications (the site's AUTH, its
   * certificate's signature by the CA).
   */
  setups_per_core: number
}

export function parseOpensslSpeed(out: string): CryptoSpeed {
  const x = /ecdh \(X25519\)\s+\S+s\s+([\d.]+)/.exec(out)
  const ed = /EdDSA \(Ed25519\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)/.exec(out)
  if (!x || !ed) throw new Error(`openssl speed printed no X25519 or Ed25519 figures: ${out.trim().slice(-300)}`)
  const [x25519, sign, verify] = [Number(x[1]), Number(ed[1]), Number(ed[2])]
  return {
    x25519,
    ed25519_sign: sign,
    ed25519_verify: verify,
    setups_per_core: Math.round(1 / (2 / x25519 + 1 / sign + 2 / verify)),
  }
}

export interface SitesPoint {
  sites: number
  /** From the farm's sites loaded (each initiating at once) to every one's IKE SA established on the hub; null: not all came up. */
  bringup_s: number | null
  established: number
  /** The farm's child SAs installed on the hub (one per site when all is well). */
  child_sas: number
  setups_per_s: number | null
  /** The hub's and the farm's charon over the bring-up, cores: which side did the work. */
  bringup_cores: { hub: number; farm: number }
  /** charon's resident memory on the active hub, MiB, with every site up. */
  hub_rss_mib: number
  /** charon's CPU on the active hub with every site idle (DPD alone), cores; null: not all came up (not idle). */
  idle_cores: number | null
  /**
   * The hub's CPU per 1000 readings of the lab's own site, its tunnel set up before the
   * farm's, and after: charon's with userspace ESP (it does the ESP), the whole VM's with
   * kernel ESP (the kernel does it; charon would show nothing).
   */
  ms_per_1000_readings: { first: number; last: number } | null
  /** Every site back on the hub after its charon restarts; null: not within the bound. */
  restart_s: { graceful: number | null; crashed: number | null }
}

export interface SitesReport {
  /** Who does the hub's ESP: charon (kernel-libipsec, containers) or the hub's own kernel (VMs). */
  esp: 'userspace' | 'kernel'
  crypto: CryptoSpeed
  dpd_s: number
  points: SitesPoint[]
  fits: Partial<Record<'bringup_s' | 'hub_rss_mib' | 'idle_cores' | 'restart_crashed_s' | 'ms_per_1000_first', LineFit>>
  /** Where the farm stopped growing, and why, if it did. */
  stopped?: string
}

/** The active hub's charon: its pid, resident memory (MiB) and CPU seconds so far. */
async function hubCharon(lab: BenchLab): Promise<{ rss_mib: number; cpu_s: number }> {
  const out = await lab.must('hub', 'p=$(cat /run/charon.pid) && grep VmRSS /proc/$p/status && cat /proc/$p/stat')
  const rss = /VmRSS:\s+(\d+)/.exec(out)
  const cpu = procCpu(out.trim().split('\n').pop()!)
  if (!rss || !cpu) throw new Error(`cannot read charon's memory and CPU on the hub: ${out}`)
  return { rss_mib: Number(rss[1]) / 1024, cpu_s: cpu.cpu_s }
}

/** The farm's charon's CPU seconds so far. */
async function farmCharonCpu(lab: BenchLab, host: string): Promise<number> {
  const out = await lab.must(host, 'cat /proc/$(systemctl show -p MainPID --value strongswan)/stat')
  const cpu = procCpu(out)
  if (!cpu) throw new Error(`cannot read the farm's charon CPU: ${out}`)
  return cpu.cpu_s
}

/** IKE SAs established on the active hub (half-open ones not counted), from charon's own counters. */
async function hubIkeSas(lab: BenchLab): Promise<number> {
  const out = (await lab.sh('hub', 'swanctl --stats 2>/dev/null')).stdout
  const m = /IKE_SAs:\s+(\d+) total, (\d+) half-open/.exec(out)
  return m ? Number(m[1]) - Number(m[2]) : -1
}

/** The farm's IKE SAs established and child SAs installed in a listing of the hub's (swanctl --list-sas). */
const farmCounts = (listing: string) => ({
  ike: (listing.match(/^farm: #\d+, ESTABLISHED/gm) ?? []).length,
  child: (listing.match(/^\s+farm: #\d+, reqid \d+, INSTALLED/gm) ?? []).length,
})

/** The farm's IKE SAs and installed child SAs on the active hub. */
async function farmSasOnHub(lab: BenchLab): Promise<{ ike: number; child: number }> {
  return farmCounts((await lab.sh('hub', 'swanctl --list-sas --ike farm 2>/dev/null')).stdout)
}

/**
 * Whether the active hub has `sites` of the farm's IKE SAs established and one for each
 * of the lab's own tunnels: charon's counters first (cheap, polled often), its listing
 * only once they are enough (a listing of a thousand SAs costs the hub what is measured).
 */
async function hubHas(lab: BenchLab, sites: number, tunnels: string[]): Promise<boolean> {
  if ((await hubIkeSas(lab)) < sites + tunnels.length) return false
  const out = (await lab.sh('hub', 'swanctl --list-sas 2>/dev/null')).stdout
  return farmCounts(out).ike >= sites && tunnels.every((t) => new RegExp(`^${t}: #\\d+, ESTABLISHED`, 'm').test(out))
}

/** The share of the time the bench's probes of the hub may take (waitFor's probeShare). */
const PROBE_SHARE = 0.1

/** Seconds from t0 until the hub has them all (hubHas, polled), or null past the bound. */
async function secondsUntil(
  lab: BenchLab,
  sites: number,
  tunnels: string[],
  boundMs: number,
  t0: number,
): Promise<number | null> {
  try {
    // Each probe is an SSH session, sudo and swanctl on the hub: on an emulated VM hub
    // about half a second of its one vCPU. Every 250 ms, the probes took the hub from
    // charon (seen: the VM at load 4, charon at 0.17 of a core, 4542 IKE datagrams in
    // three minutes dropped on a full UDP receive buffer, 11 of 50 sites up after 300 s), so they take
    // at most a tenth of the time, which costs a container hub nothing (its probe: tens of ms).
    await waitFor(`${sites} farm sites on the hub`, () => hubHas(lab, sites, tunnels), boundMs, 250, {
      probeShare: PROBE_SHARE,
    })
    return (Date.now() - t0) / 1000
  } catch {
    return null
  }
}

/** The hub's CPU while `fn` runs (charon's, or the whole VM's with kernel ESP), and its result. */
async function hubCpuDuring<T>(
  lab: BenchLab,
  esp: SitesReport['esp'],
  fn: () => Promise<T>,
): Promise<{ cpu_s: number; result: T }> {
  const read = async () => (esp === 'kernel' ? hostCpuSeconds(lab, 'hub') : (await hubCharon(lab)).cpu_s)
  const a = await read()
  const result = await fn()
  const b = await read()
  return { cpu_s: b - a, result }
}

export interface SitesOptions {
  sites: number[]
  /** How long each idle reading lasts, s. */
  idleS: number
  load: LoadOptions
  /** The farthest a bring-up or a restart may take before the point records it as not done, s. */
  boundS: number
}

export async function sitesBench(plan: Plan, o: SitesOptions, log: (m: string) => void): Promise<SitesReport> {
  if (!plan.vpn || plan.vpn.auth !== 'pubkey')
    throw new Error("the sites curve needs the VPN with certificates (vpn.auth: pubkey): a farm's sites have their own")
  const { raw, host } = withSiteFarm(parse(fs.readFileSync(topologyFile, 'utf8')) as RawTopology, plan)
  const max = Math.max(...o.sites)
  const points: SitesPoint[] = []
  let crypto: CryptoSpeed | undefined
  let esp: SitesReport['esp'] = 'userspace'
  let stopped: string | undefined
  log(`Sites: a site farm (${host}) with ${o.sites.join(', ')} sites against the hub, added as data`)
  await withTopologyCopy(
    raw,
    [host],
    'a site farm',
    async (bigger, lab) => {
      const farm = bigger.siteFarm!
      if (max > farmCapacity(farm)) throw new Error(`${max} sites: the farm's ranges hold ${farmCapacity(farm)}`)
      const sites = Array.from({ length: max }, (_, i) => farmSite(farm, bigger.name, i + 1))
      const tunnel = bigger.vpn!.tunnels[0]
      const hubHost = bigger.hosts.find((h) => h.name === tunnel.hubMembers[0])!
      esp = providerOps(hubHost.provider).ownKernel ? 'kernel' : 'userspace'
      log(
        `  the hub's ESP: ${esp === 'kernel' ? `its own kernel's (${hubHost.provider})` : "charon's (kernel-libipsec)"}`,
      )
      crypto = parseOpensslSpeed(await lab.must('hub', 'openssl speed -seconds 2 ecdhx25519 ed25519 2>/dev/null'))
      log(
        `  the hub's crypto: X25519 ${crypto.x25519}/s, Ed25519 sign ${crypto.ed25519_sign}/s verify ${crypto.ed25519_verify}/s: at most ${crypto.setups_per_core} IKE setups/s per core`,
      )

      // Every site's key and certificate (made once, then kept), its address on the farm.
      const t = Date.now()
      const creds = await farmCredentials(pkiPaths(stateDir), bigger.name, max, (i) => sites[i - 1].id)
      log(`  ${max} site certificates from the lab CA ready in ${((Date.now() - t) / 1000).toFixed(1)} s`)
      const files = sites.flatMap((s) => [
        `=== /etc/swanctl/private/${s.name}.key\n${fs.readFileSync(creds.key(s.index), 'utf8')}`,
        `=== /etc/swanctl/x509/${s.name}.pem\n${fs.readFileSync(creds.cert(s.index), 'utf8')}`,
      ])
      await lab.must(host, `umask 077 && awk '/^=== / { if (f) close(f); f = $2; next } { print > f }'`, {
        stdin: files.join(''),
      })
      const dev = (await lab.must(host, `ip -o -4 addr show | awk '$4 ~ /^${farm.address}\\// {print $2}'`)).trim()
      // Each site's outer address on the wan side, and its LAN address on lo: charon's
      // userspace ESP routes a child SA's traffic from a local address inside its LAN.
      await lab.must(host, 'ip -batch -', {
        stdin: sites
          .map((s) => `address replace ${s.address}/32 dev ${dev}\naddress replace ${s.lanAddress}/32 dev lo\n`)
          .join(''),
      })
      const [client] = hostsWithRole(bigger, 'iot-client')
      const url = clientOf(bigger, client.name)!.url
      const hubId = ikeIdentity(bigger.name, tunnel.hub)

      /** CPU per 1000 readings of the lab's own site, through the hub's charon. */
      const perReadings = async (label: string) => {
        const { cpu_s, result } = await hubCpuDuring(lab, esp, () =>
          runScenario(
            lab,
            {
              id: `sites-${label}`,
              title: `the lab's site, ${label}`,
              from: client.name,
              url,
              backends: bigger.services.backends.length,
            },
            o.load,
            () => {},
          ),
        )
        const acked = result.runs.reduce((n, r) => n + r.acked, 0)
        return acked > 0 ? Math.round((cpu_s / acked) * 1e7) / 10 : NaN
      }
      const farmDown = async () => {
        await lab.must(host, 'systemctl stop strongswan')
        await waitFor('no farm SA left on the hub', async () => (await farmSasOnHub(lab)).ike === 0, 60_000, 500, {
          probeShare: PROBE_SHARE,
        })
      }

      // N = 0: the hub without a farm, for the lines' intercepts.
      const tunnels = bigger.vpn!.tunnels.map((x) => x.name)
      for (const n of [0, ...o.sites]) {
        await farmDown()
        // The farm's charon started with its credentials (every site's key and certificate,
        // loaded before the clock starts) and no site; then the sites are loaded, and each
        // initiates at once (start_action): from nothing to all up.
        await lab.must(host, 'cat > /etc/swanctl/conf.d/farm.conf', { stdin: farmConf([], farm, hubId, []) })
        await lab.must(host, 'systemctl start strongswan')
        await lab.must(host, 'cat > /etc/swanctl/conf.d/farm.conf', {
          stdin: farmConf(sites.slice(0, n), farm, hubId, tunnel.hubSubnets),
        })
        // Which side does the work of the bring-up: each charon's CPU over it.
        const cpuBefore = await Promise.all([hubCharon(lab), farmCharonCpu(lab, host)])
        const t0 = Date.now()
        if (n > 0) await lab.must(host, 'swanctl --load-conns >/dev/null')
        const bringup = n > 0 ? await secondsUntil(lab, n, tunnels, o.boundS * 1000, t0) : 0
        const cpuAfter = await Promise.all([hubCharon(lab), farmCharonCpu(lab, host)])
        const over = (Date.now() - t0) / 1000
        const bringupCores = {
          hub: Math.round(((cpuAfter[0].cpu_s - cpuBefore[0].cpu_s) / over) * 100) / 100,
          farm: Math.round(((cpuAfter[1] - cpuBefore[1]) / over) * 100) / 100,
        }
        const up = await farmSasOnHub(lab)
        /** What every point has: the sites, and how the bring-up went. */
        const measured = {
          sites: n,
          established: up.ike,
          child_sas: up.child,
          bringup_cores: bringupCores,
        }
        log(
          `  ${n} sites: ${bringup === null ? `${up.ike} of ${n} up after ${o.boundS} s` : `up in ${bringup.toFixed(1)} s`} (${up.child} child SAs; cores over it: hub ${bringupCores.hub}, farm ${bringupCores.farm})`,
        )
        if (bringup === null) {
          // Not all came up: the rest are still trying, so nothing after is what it
          // measures (idle, the lab site's readings among N sites, N back after a
          // restart), and the lab's own site may not get through either. What was
          // measured is kept, and the curve stops here with the reason.
          points.push({
            ...measured,
            bringup_s: null,
            setups_per_s: null,
            hub_rss_mib: Math.round(cpuAfter[0].rss_mib * 10) / 10,
            idle_cores: null,
            ms_per_1000_readings: null,
            restart_s: { graceful: null, crashed: null },
          })
          stopped = `${n} sites: ${up.ike} came up within ${o.boundS} s`
          break
        }
        // Idle: DPD alone (the lab's client is paused by the bench).
        const a = await hubCharon(lab)
        await new Promise((r) => setTimeout(r, o.idleS * 1000))
        const b = await hubCharon(lab)
        const idle = (b.cpu_s - a.cpu_s) / o.idleS
        // The lab's own site: its tunnel first (set up before the farm's), then last.
        const first = await perReadings(`before ${n} farm sites`)
        await lab.must(tunnel.site, `swanctl --terminate --ike ${tunnel.name} --timeout 10 >/dev/null; true`)
        await waitFor(`${tunnel.site}'s tunnel back`, () => hubHas(lab, up.ike, tunnels), 60_000, 250)
        await waitFor(
          `${tunnel.site}'s child SA installed`,
          async () => /INSTALLED/.test((await lab.sh(tunnel.site, `swanctl --list-sas --ike ${tunnel.name}`)).stdout),
          30_000,
        )
        const last = await perReadings(`after ${n} farm sites`)
        // The reconnect storm: the hub's charon restarted, then killed (systemd starts it again).
        const restart = async (cmd: string) => {
          const t1 = Date.now()
          await lab.sh('hub', cmd)
          return secondsUntil(lab, up.ike, tunnels, o.boundS * 1000, t1)
        }
        const graceful = await restart('systemctl restart strongswan')
        const crashed = await restart('kill -KILL $(cat /run/charon.pid)')
        const point: SitesPoint = {
          ...measured,
          bringup_s: Math.round(bringup * 10) / 10,
          setups_per_s: bringup ? Math.round(n / bringup) : null,
          hub_rss_mib: Math.round(b.rss_mib * 10) / 10,
          idle_cores: Math.round(idle * 1000) / 1000,
          ms_per_1000_readings: Number.isFinite(first + last) ? { first, last } : null,
          restart_s: {
            graceful: graceful === null ? null : Math.round(graceful * 10) / 10,
            crashed: crashed === null ? null : Math.round(crashed * 10) / 10,
          },
        }
        points.push(point)
        log(
          `    hub charon ${point.hub_rss_mib} MiB, idle ${point.idle_cores} cores; per 1000 readings ${first} ms (first), ${last} ms (last); back after a restart ${point.restart_s.graceful ?? '-'} s, a crash ${point.restart_s.crashed ?? '-'} s`,
        )
      }
      await farmDown()
    },
    log,
    // The farm changes only the hub's members (its connection, route and firewall opening).
    { touches: plan.vpn.tunnels[0].hubMembers },
  )
  return {
    esp,
    crypto: crypto!,
    dpd_s: IKE_TIMERS.dpdS,
    points,
    fits: sitesFits(points),
    ...(stopped ? { stopped } : {}),
  }
}

/**
 * The active hub's charon CPU per IKE setup over a point's bring-up, ms, as bounds.
 * `most`: its cores over the bring-up times its length, over its sites: everything
 * charon did meanwhile, the DPD of the sites already up too. `least`: less that DPD as
 * if every site had been up and idle the whole time (the point's idle cores). null
 * where not every site came up.
 */
export function hubMsPerSetup(p: SitesPoint): { most: number; least: number | null } | null {
  if (!p.sites || p.bringup_s === null || !(p.bringup_cores.hub > 0)) return null
  const per = (cores: number) => (cores * p.bringup_s! * 1000) / p.sites
  return {
    most: per(p.bringup_cores.hub),
    least: p.idle_cores === null ? null : per(Math.max(0, p.bringup_cores.hub - p.idle_cores)),
  }
}

/** Each measured quantity against sites, fitted to a line (where two points or more have it). */
export function sitesFits(points: SitesPoint[]): SitesReport['fits'] {
  const line = (key: keyof SitesReport['fits'], y: (p: SitesPoint) => number | null | undefined) => {
    // Over the points with sites: the hub without any is the table's reference row (a
    // charon that served more sites before keeps its heap until it restarts). And only
    // where every site came up: where the curve stopped, the sites were not there to cost.
    const ps = points.filter((p) => p.sites > 0 && p.bringup_s !== null).map((p) => ({ x: p.sites, y: y(p) ?? NaN }))
    try {
      return { [key]: fitLine(ps) }
    } catch {
      return {}
    }
  }
  return {
    ...line('bringup_s', (p) => p.bringup_s),
    ...line('hub_rss_mib', (p) => p.hub_rss_mib),
    ...line('idle_cores', (p) => p.idle_cores),
    ...line('restart_crashed_s', (p) => p.restart_s.crashed),
    ...line('ms_per_1000_first', (p) => p.ms_per_1000_readings?.first),
  }
}

/** The charts' files, in sitesCurves' order. */
export const SITES_CHARTS = [
  { file: 'sites-memory.svg', alt: "the hub's memory against sites" },
  { file: 'sites-idle.svg', alt: "the hub's idle CPU against sites" },
  { file: 'sites-up.svg', alt: 'every site up: bring-up and restarts' },
  { file: 'sites-readings.svg', alt: "the hub's CPU per 1000 readings against sites" },
]

/**
 * The charts there is something to draw on, each with its curve: a curve stopped at its
 * first point with sites (none up in the bound) has only what the 0-site point measured,
 * and some curves leave that point out.
 */
export const sitesChartsDrawn = (r: SitesReport) =>
  sitesCurves(r)
    .map((curve, i) => ({ ...SITES_CHARTS[i], curve }))
    .filter((c) => drawable(c.curve))

/** The hub against sites: memory, idle CPU, the times for all to be up, CPU per reading. */
export function sitesCurves(r: SitesReport): Curve[] {
  const pts = (y: (p: SitesPoint) => number | null | undefined) =>
    r.points.filter((p) => y(p) != null).map((p) => ({ x: p.sites, y: y(p)! }))
  return [
    {
      title: "The hub's charon against sites: resident memory (MiB)",
      x: 'sites',
      y: 'MiB',
      fit: true,
      series: [{ name: 'charon RSS', points: pts((p) => p.hub_rss_mib) }],
    },
    {
      title: `The hub's charon against sites: CPU with every site idle (DPD every ${r.dpd_s} s), cores`,
      x: 'sites',
      y: 'cores',
      fit: true,
      series: [{ name: 'idle', points: pts((p) => p.idle_cores) }],
    },
    {
      title: 'Every site up: from nothing, and after the hub restarts (s)',
      x: 'sites',
      y: 's',
      fit: true,
      series: [
        { name: 'bring-up', points: pts((p) => (p.sites ? p.bringup_s : null)) },
        { name: 'after a graceful restart', points: pts((p) => (p.sites ? p.restart_s.graceful : null)) },
        { name: 'after a crash', points: pts((p) => (p.sites ? p.restart_s.crashed : null)) },
      ],
    },
    {
      title:
        r.esp === 'kernel'
          ? "The hub (its whole VM: the kernel does the ESP) per 1000 readings of the lab's own site (ms of CPU)"
          : "The hub's charon per 1000 readings of the lab's own site (ms of CPU)",
      x: 'sites',
      y: 'ms',
      fit: true,
      series: [
        { name: 'its tunnel first', points: pts((p) => p.ms_per_1000_readings?.first) },
        { name: 'its tunnel last', points: pts((p) => p.ms_per_1000_readings?.last) },
      ],
    },
  ]
}
