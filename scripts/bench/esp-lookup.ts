// Kernel ESP's lookups against many sites (issue 20): what the hub's kernel pays per
// 1000 readings of the lab's own site while it holds N other sites' SAs and policies,
// side by side with none, on VM gateways (their own kernel does ESP). The sites curve
// shows userspace ESP's cost growing with the sites ahead in libipsec's lists; an
// emulated VM hub cannot carry enough real sites to show the kernel's (their DPD alone
// fills its vCPU), so here the other sites are what their tunnels would leave in the
// kernel: for each, an inbound and an outbound ESP SA and the in, fwd and out policies
// between its LAN and the hub's, at its own address and LAN from the farm's ranges,
// written straight into XFRM and removed after. The lab's site's packets are looked up
// among them as they would be among real ones: SAs by SPI, policies by selector.
import { clientOf, farmCapacity, hostsWithRole, type Plan } from '../../provision/plan.js'
import { providerOps } from '../lib/providers.js'
import { hostCpuSeconds } from './cpu.js'
import { runScenario, type LoadOptions } from './ingest.js'
import type { BenchLab } from './lab.js'
import { FARM_RANGES, farmSlot } from './sites.js'
import { figure, type Figure } from './stats.js'

export interface LookupPoint {
  /** Other sites' SAs and policies in the hub's kernel. */
  sites: number
  round: number
  /** The hub's whole VM, ms of CPU per 1000 readings acknowledged. */
  ms_per_1000_readings: number
  /** The SAs and policies the hub's kernel held while it was measured (ip xfrm ... count). */
  kernel_sas: number
  kernel_policies: number
}

export interface LookupReport {
  /** The gateway measured: the hub, or its pair's member active at the start. */
  hub: string
  points: LookupPoint[]
  /** Per number of other sites: the rounds' figure. */
  by_sites: { sites: number; ms: Figure }[]
}

/** SPIs of the other sites: a range of their own, far from charon's random ones in practice. */
const SPI_IN = 0xc1000000
const SPI_OUT = 0xc2000000
/** A reqid range of their own (charon counts its reqids up from 1). */
const REQID = 0x10000000
/** The other sites' reqids (REQID + i; charon's count up from 1), as awk and grep -E both read it. */
const OURS_REQID = '^2684[0-9][0-9][0-9][0-9][0-9]$'

/**
 * Removes every other site's SA and policy in the kernel, whoever wrote them (this run,
 * or one killed before its end): each is found by its reqid in the kernel's own listing
 * and deleted by its key, so the lab's own are never touched. (`ip xfrm ... deleteall`
 * with a filter gives up past a few thousand: "State buffer overflow".)
 */
export const REMOVE_OURS = `{ ip xfrm state | awk '/^src/ { s = $2; d = $4 } $5 == "reqid" && $6 ~ /${OURS_REQID}/ { print "xfrm state delete src " s " dst " d " proto esp spi " $4 }'; ip xfrm policy | awk '/^src/ { s = $2; d = $4 } $1 == "dir" { dir = $2 } $3 == "reqid" && $4 ~ /${OURS_REQID}/ { print "xfrm policy delete src " s " dst " d " dir " dir }'; } | ip -batch -`

/**
 * The `ip -batch` lines that add the other sites 1..n to a hub at `hubAddress` whose
 * LANs are `hubSubnets`, and the lines that remove them. Pure.
 */
export function otherSites(n: number, hubAddress: string, hubSubnets: string[]): { add: string; remove: string } {
  const most = farmCapacity(FARM_RANGES)
  if (!Number.isInteger(n) || n < 0 || n > most)
    throw new Error(`${n} other sites: the farm's ranges hold 0 to ${most}`)
  const add: string[] = []
  const remove: string[] = []
  // Any key does: nothing is ever encrypted with these SAs, but the kernel checks its size.
  const key = `0x${'5a'.repeat(36)}`
  for (let i = 1; i <= n; i++) {
    const { address: site, lan } = farmSlot(FARM_RANGES, i)
    const reqid = REQID + i
    const spiIn = `0x${(SPI_IN + i).toString(16)}`
    const spiOut = `0x${(SPI_OUT + i).toString(16)}`
    const aead = `aead 'rfc7539esp(chacha20,poly1305)' ${key} 128`
    add.push(`xfrm state add src ${site} dst ${hubAddress} proto esp spi ${spiIn} reqid ${reqid} mode tunnel ${aead}`)
    add.push(`xfrm state add src ${hubAddress} dst ${site} proto esp spi ${spiOut} reqid ${reqid} mode tunnel ${aead}`)
    remove.push(`xfrm state delete src ${site} dst ${hubAddress} proto esp spi ${spiIn}`)
    remove.push(`xfrm state delete src ${hubAddress} dst ${site} proto esp spi ${spiOut}`)
    for (const net of hubSubnets) {
      for (const dir of ['in', 'fwd'])
        add.push(
          `xfrm policy add src ${lan} dst ${net} dir ${dir} tmpl src ${site} dst ${hubAddress} proto esp reqid ${reqid} mode tunnel`,
        )
      add.push(
        `xfrm policy add src ${net} dst ${lan} dir out tmpl src ${hubAddress} dst ${site} proto esp reqid ${reqid} mode tunnel`,
      )
      for (const dir of ['in', 'fwd']) remove.push(`xfrm policy delete src ${lan} dst ${net} dir ${dir}`)
      remove.push(`xfrm policy delete src ${net} dst ${lan} dir out`)
    }
  }
  return { add: add.join('\n') + '\n', remove: remove.join('\n') + '\n' }
}

/** The SAs and policies in the hub's kernel, all and the other sites' own, from `ip xfrm` listings. */
export const XFRM_COUNTS = `for what in state policy; do ip xfrm $what | grep -c '^src' || true; ip xfrm $what | grep -cE 'reqid ${OURS_REQID.slice(1, -1)}( |$)' || true; done`
export function parseXfrmCounts(out: string): {
  sas: number
  policies: number
  ours: { sas: number; policies: number }
} {
  const n = out.trim().split(/\s+/).map(Number)
  if (n.length !== 4 || n.some((x) => !Number.isInteger(x) || x < 0))
    throw new Error(`cannot read the kernel's SAs and policies: ${out.trim().slice(0, 300)}`)
  return { sas: n[0], policies: n[2], ours: { sas: n[1], policies: n[3] } }
}

export interface LookupOptions {
  /** The numbers of other sites, measured in turn each round (0 among them). */
  sites: number[]
  rounds: number
  load: LoadOptions
}

export async function espLookupBench(
  lab: BenchLab,
  plan: Plan,
  o: LookupOptions,
  log: (m: string) => void,
): Promise<LookupReport> {
  const tunnel = plan.vpn?.tunnels[0]
  if (!tunnel) throw new Error('the ESP lookup comparison needs a hub and an IoT site (vpn) in the topology')
  const hubHost = plan.hosts.find((h) => h.name === tunnel.hubMembers[0])!
  if (!providerOps(hubHost.provider).ownKernel)
    throw new Error(
      `the ESP lookup comparison needs a hub whose own kernel does ESP: ${hubHost.name} runs on ${hubHost.provider}, whose kernel here has none (charon's userspace ESP, measured by --sites-curve). Bring the gateways up as VMs: LAB_VM_ROLES=gateway npm run lab`,
    )
  const [client] = hostsWithRole(plan, 'iot-client')
  const url = clientOf(plan, client.name)!.url
  const hub = tunnel.hub
  const counts = async () => parseXfrmCounts(await lab.must(hub, XFRM_COUNTS))
  const batch = (n: number) => otherSites(n, tunnel.hubAddress, tunnel.hubSubnets)
  /** How many this run wrote and left in place (a round's last is the next one's first). */
  let installed: number | undefined
  /** Only the other sites' entries, whatever a killed run left too, then n of them. */
  const setSites = async (n: number) => {
    if (n === installed) return
    installed = undefined
    await lab.must(hub, REMOVE_OURS)
    if (n > 0) await lab.must(hub, 'ip -batch -', { stdin: batch(n).add })
    installed = n
  }
  /** The member measured: the hub's, or its pair's active one (lab.must resolves the pair's name). */
  const active = (await lab.must(hub, 'hostname')).trim()
  const points: LookupPoint[] = []
  const base = await counts()
  log(
    `ESP lookups: the hub's kernel with ${o.sites.join(', ')} other sites' SAs and policies, ${o.rounds} rounds (it holds ${base.sas} SAs and ${base.policies} policies of its own)`,
  )
  try {
    for (let round = 1; round <= o.rounds; round++) {
      // Every other round in the reverse order: a drift of the machine hits each alike.
      const order = round % 2 ? o.sites : [...o.sites].reverse()
      for (const n of order) {
        await setSites(n)
        const held = await counts()
        const want = { sas: 2 * n, policies: 3 * n * tunnel.hubSubnets.length }
        if (held.ours.sas !== want.sas || held.ours.policies !== want.policies)
          throw new Error(
            `${n} other sites: the hub's kernel holds ${held.ours.sas} of their ${want.sas} SAs and ${held.ours.policies} of their ${want.policies} policies`,
          )
        const a = await hostCpuSeconds(lab, hub)
        const result = await runScenario(
          lab,
          {
            id: `esp-lookup-${n}`,
            title: `the lab's site, ${n} other sites`,
            from: client.name,
            url,
            backends: plan.services.backends.length,
          },
          o.load,
          () => {},
        )
        const b = await hostCpuSeconds(lab, hub)
        const acked = result.runs.reduce((s, r) => s + r.acked, 0)
        if (!acked) throw new Error(`${n} other sites: no reading was acknowledged through the hub`)
        const ms = Math.round(((b - a) / acked) * 1e7) / 10
        points.push({ sites: n, round, ms_per_1000_readings: ms, kernel_sas: held.sas, kernel_policies: held.policies })
        log(
          `  round ${round}, ${n} other sites (${held.sas} SAs, ${held.policies} policies): ${ms} ms per 1000 readings`,
        )
      }
    }
  } finally {
    installed = undefined
    await setSites(0)
  }
  const after = await counts()
  if (after.ours.sas || after.ours.policies)
    throw new Error(
      `the hub's kernel still holds ${after.ours.sas} SAs and ${after.ours.policies} policies of the other sites`,
    )
  return {
    hub: active,
    points,
    by_sites: o.sites.map((sites) => ({
      sites,
      ms: figure(points.filter((p) => p.sites === sites).map((p) => p.ms_per_1000_readings)),
    })),
  }
}
