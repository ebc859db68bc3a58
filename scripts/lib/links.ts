// The lab's links as the operator's commands name them: a network (its bridge on this
// machine, shared by containers and VMs) or host:interface (a host's interface, named
// after its network inside the host). Parsing refuses a wrong name with a sentence that
// names the argument and what would be right.
import { vagrantInventory } from '../../provision/inventory.js'
import { SshHost } from '../../provision/ssh.js'
import type { Host, Network, Plan } from '../../provision/plan.js'
import { repoRoot } from '../../provision/paths.js'

export type Link = { kind: 'network'; network: Network } | { kind: 'interface'; host: Host; network: Network }

export class UsageError extends Error {}

export function parseLink(t: Plan, arg: string | undefined, opts: { allowManagement?: boolean } = {}): Link {
  const networks = t.networks.map((n) => n.name)
  const usage = `a network (${networks.join(', ')}) or host:interface (e.g. ${t.hosts.find((h) => h.role === 'gateway')?.name ?? t.hosts[0].name}:${t.networks.find((n) => n.kind === 'wan')?.name ?? networks[0]})`
  if (!arg) throw new UsageError(`name the link: ${usage}`)
  const [name, ifname, ...rest] = arg.split(':')
  if (rest.length) throw new UsageError(`link ${JSON.stringify(arg)}: one colon at most, as host:interface`)
  const mgmt = (n: Network) => {
    if (n.kind === 'management' && !opts.allowManagement)
      throw new UsageError(
        `link ${JSON.stringify(arg)}: the management network is how the lab is reached; it is never impaired`,
      )
  }
  if (ifname === undefined) {
    const network = t.networks.find((n) => n.name === name)
    if (!network) throw new UsageError(`link ${JSON.stringify(arg)}: no such network; give ${usage}`)
    mgmt(network)
    return { kind: 'network', network }
  }
  const host = t.hosts.find((h) => h.name === name)
  if (!host)
    throw new UsageError(
      `link ${JSON.stringify(arg)}: no host ${JSON.stringify(name)} in the topology (${t.hosts.map((h) => h.name).join(', ')})`,
    )
  const iface = host.interfaces.find((i) => i.network === ifname)
  if (!iface)
    throw new UsageError(
      `link ${JSON.stringify(arg)}: ${host.name} has no interface ${JSON.stringify(ifname)}; its interfaces are ${host.interfaces.map((i) => i.network).join(', ')}`,
    )
  const network = t.networks.find((n) => n.name === ifname)!
  mgmt(network)
  return { kind: 'interface', host, network }
}

export const linkName = (l: Link) => (l.kind === 'network' ? l.network.name : `${l.host.name}:${l.network.name}`)

/** A whole number in a range, or a UsageError naming the option. */
export function boundedNumber(
  value: unknown,
  option: string,
  min: number,
  max: number,
  opts: { integer?: boolean; decimals?: number } = {},
): number {
  const n = Number(value)
  const ok =
    Number.isFinite(n) &&
    n >= min &&
    n <= max &&
    (opts.integer ? Number.isInteger(n) : Number.isInteger(n * 10 ** (opts.decimals ?? 0)))
  if (!ok)
    throw new UsageError(
      `--${option} must be ${opts.integer ? 'a whole number' : `a number with at most ${opts.decimals ?? 0} decimal${opts.decimals === 1 ? '' : 's'}`} from ${min} to ${max}; got ${JSON.stringify(value)}`,
    )
  return n
}

/** The device inside the host that carries its address on the link's network (named after the network on lxc, ethN on a VM). */
export async function deviceOf(ssh: SshHost, link: Extract<Link, { kind: 'interface' }>): Promise<string> {
  const address = link.host.interfaces.find((i) => i.network === link.network.name)!.address
  const r = await ssh.exec(`ip -o -4 addr show to ${address}/32 | awk '{print $2; exit}'`, { check: false })
  const dev = r.stdout.trim()
  if (!dev)
    throw new Error(
      `${linkName(link)}: ${link.host.name} has no interface with ${address}; is it provisioned? npm run provision`,
    )
  return dev
}

/** SSH to one lab host (root), or an error that says what to do. */
export async function connect(host: Host): Promise<SshHost> {
  const inv = await vagrantInventory([host], repoRoot)
  const entry = inv.entries.get(host.name)
  if (!entry) throw new Error(`${host.name} is not running (${inv.missing.get(host.name)}): npm run lab`)
  return SshHost.connect(entry, 10_000)
}
