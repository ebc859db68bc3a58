// Just enough IPv4 arithmetic to validate an address plan: no dependency needed.

export function parseAddress(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
  if (!m) return undefined
  const octets = m.slice(1).map(Number)
  if (octets.some((o) => o > 255)) return undefined
  return ((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) >>> 0
}

export function formatAddress(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.')
}

export interface Cidr {
  network: number
  prefix: number
  text: string
}

export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text)
  if (!m) return undefined
  const network = parseAddress(m[1])
  const prefix = Number(m[2])
  if (network === undefined || prefix > 32) return undefined
  if ((network & mask(prefix)) >>> 0 !== network) return undefined // host bits set
  return { network, prefix, text }
}

export function mask(prefix: number): number {
  return prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0
}

export function broadcast(c: Cidr): number {
  return (c.network | ~mask(c.prefix)) >>> 0
}

export function contains(c: Cidr, address: number): boolean {
  return (address & mask(c.prefix)) >>> 0 === c.network
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix)
  return (a.network & mask(p)) >>> 0 === (b.network & mask(p)) >>> 0
}

/** A usable host address of the network: neither the network nor its broadcast address. */
export function isHostAddress(c: Cidr, address: number): boolean {
  return contains(c, address) && address !== c.network && address !== broadcast(c)
}
