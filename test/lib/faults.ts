// Faults the tests make on purpose, with the operator's own command (lab:impair's
// library), each undone by the function it returns.
import { impair } from '../../scripts/lib/impair.js'
import { parseLink } from '../../scripts/lib/links.js'
import type { Lab } from './lab.js'

/**
 * The site loses its uplink: 100 % loss on the gateway's internet interface (the
 * tunnel's IKE and ESP with it), as `npm run lab:impair -- GW:WAN --loss 100` does.
 * Returns the function that restores it.
 */
export async function cutInternet(lab: Lab, gateway: string, wanInterface: string): Promise<() => Promise<void>> {
  const link = parseLink(lab.topology, `${gateway}:${wanInterface}`)
  await impair(link, { loss: 100 }, () => {})
  return () => impair(link, { clear: true }, () => {})
}
