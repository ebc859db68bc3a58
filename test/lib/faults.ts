// Faults the tests make on purpose, each undone by the function it returns (and by
// its comment tag, should a test die halfway: the next run removes leftovers first).
import { shellQuote as q } from '../../provision/ssh.js'
import type { Lab } from './lab.js'

const CUT = 'test: internet cut'

/** Remove every rule a test left with this tag (in any chain of inet lab). */
async function removeTagged(lab: Lab, host: string, tag: string) {
  await lab.sh(host, `for c in input output; do nft -a list chain inet lab $c 2>/dev/null | awk ${q(`/${tag}/ {print $NF}`)} | while read h; do nft delete rule inet lab $c handle "$h"; done; done`)
}

/**
 * The site loses its uplink: the gateway drops everything in and out of its internet
 * interface (the tunnel's IKE and ESP with it). Returns the function that restores it.
 */
export async function cutInternet(lab: Lab, gateway: string, wanInterface: string): Promise<() => Promise<void>> {
  await removeTagged(lab, gateway, CUT)
  // Quoted: an interface may be named like an nft keyword ("inet").
  const rules = [`input iifname ${q(`"${wanInterface}"`)} drop`, `output oifname ${q(`"${wanInterface}"`)} drop`]
  for (const r of rules) {
    const res = await lab.sh(gateway, `nft insert rule inet lab ${r} comment ${q(`"${CUT}"`)}`)
    if (res.code !== 0) throw new Error(`${gateway}: cannot cut the internet (${res.stderr.trim()})`)
  }
  return () => removeTagged(lab, gateway, CUT)
}
