// Faults the tests make on purpose, with the operator's own command (lab:impair's
// library), each undone by the function it returns.
import { shellQuote as q } from '../../provision/ssh.js'
import { impair } from '../../scripts/lib/impair.js'
import { parseLink } from '../../scripts/lib/links.js'
import type { Lab } from './lab.js'

/**
 * The site loses its uplink: 100 % loss on the gateway's internet interface (the
 * tunnel's IKE and ESP with it), as `npm run lab:impair -- GW:WAN --loss 100` does.
 * Returns the function that restores it.
 */
export async function cutInternet(lab: Lab, gateway: string, wanInterface: string): Promise<() => Promise<void>> {
  const link = parseLink(lab.plan, `${gateway}:${wanInterface}`)
  await impair(link, { loss: 100 }, () => {})
  return () => impair(link, { clear: true }, () => {})
}

/** Remove the rules a cut with this tag left in a host's output chain (a test that died halfway, too). */
export function uncutTcp(lab: Lab, host: string, tag: string) {
  return lab.sh(
    host,
    `nft -a list chain inet lab output | awk ${q(`/${tag}/ {print $NF}`)} | while read h; do nft delete rule inet lab output handle "$h"; done`,
  )
}

/**
 * A host can no longer reach address:port: its own output chain answers each attempt
 * with a TCP reset (tagged, so that uncutTcp finds it). Returns the function that
 * restores it.
 */
export async function cutTcp(
  lab: Lab,
  host: string,
  address: string,
  port: number,
  tag: string,
): Promise<() => Promise<void>> {
  await uncutTcp(lab, host, tag)
  const r = await lab.sh(
    host,
    `nft insert rule inet lab output ip daddr ${address} tcp dport ${port} reject with tcp reset comment ${q(`"${tag}"`)}`,
  )
  if (r.code !== 0) throw new Error(`${host}: cannot cut ${address}:${port} (${r.stderr.trim()})`)
  return async () => {
    await uncutTcp(lab, host, tag)
  }
}
