// npm run lab:impair: random loss on a lab link, with nftables (this kernel has no
// netem, so no delay here; inside a VM, whose kernel has it, delay works on a host's
// interface). A network: a bridge-family table on this machine drops the frames that
// enter the bridge from its ports (every host's link, both ways). host:interface: a
// table inside the host drops what comes in and goes out of that interface, forwarded
// traffic included. Each impairment is recorded in .lab/impairments.json (lab:status
// lists it) and cleared by --clear or by lab:down.
import fs from 'node:fs'
import { $ } from 'zx'
import { connect, deviceOf, linkName, UsageError, type Link } from './links.js'
import { recordList } from './records.js'

export const BRIDGE_TABLE = 'iotlab_impair'
export const HOST_TABLE = 'lab_impair'

export interface Impairment {
  link: string
  loss: number
  delayMs?: number
  since: string
}

const impairments = recordList<Impairment>('impairments.json')
export const recorded = () => impairments.read()
const record = (list: Impairment[]) => impairments.write(list)

/** The nftables match for a loss of P percent (one decimal): numgen over 1000; 100 %: every packet. */
export const lossMatch = (loss: number) => (loss >= 100 ? '' : `numgen random mod 1000 < ${Math.round(loss * 10)}`)
const spaced = (m: string) => (m ? `${m} ` : '')

/** The bridge table's rule for one network: frames entering from any of its ports. */
export function bridgeRule(network: string, ports: string[], loss: number): string {
  return `iifname { ${ports.map((p) => `"${p}"`).join(', ')} } ${spaced(lossMatch(loss))}counter drop comment "lab:impair ${network} loss ${loss}%"`
}

/** The script that impairs one interface inside a host (idempotent: the table is remade). */
export function hostScript(ifname: string, loss: number, delayMs?: number): string {
  const lines = [
    'set -e',
    `nft delete table inet ${HOST_TABLE} 2>/dev/null || true`,
    `nft add table inet ${HOST_TABLE}`,
    `nft add chain inet ${HOST_TABLE} in '{ type filter hook prerouting priority -300; }'`,
    `nft add chain inet ${HOST_TABLE} out '{ type filter hook postrouting priority 300; }'`,
  ]
  if (loss > 0) {
    lines.push(
      `nft add rule inet ${HOST_TABLE} in iifname '"${ifname}"' ${spaced(lossMatch(loss))}counter drop comment '"lab:impair loss ${loss}%"'`,
    )
    lines.push(
      `nft add rule inet ${HOST_TABLE} out oifname '"${ifname}"' ${spaced(lossMatch(loss))}counter drop comment '"lab:impair loss ${loss}%"'`,
    )
  }
  lines.push(`tc qdisc del dev ${ifname} root 2>/dev/null || true`)
  if (delayMs) lines.push(`tc qdisc add dev ${ifname} root netem delay ${delayMs}ms || { echo "NO_NETEM"; exit 3; }`)
  return lines.join('\n')
}

const bridgePorts = (bridge: string) => {
  try {
    return fs.readdirSync(`/sys/class/net/${bridge}/brif`)
  } catch {
    return []
  }
}

async function applyNetwork(link: Extract<Link, { kind: 'network' }>, loss: number | undefined) {
  const bridge = link.network.bridge
  await $({ quiet: true, nothrow: true })`nft add table bridge ${BRIDGE_TABLE}`
  await $({ quiet: true })`nft add chain bridge ${BRIDGE_TABLE} impair ${'{ type filter hook forward priority 0; }'}`
  // Remove this network's rule, whatever its loss was.
  const listed = (await $({ quiet: true })`nft -a list chain bridge ${BRIDGE_TABLE} impair`).stdout
  for (const m of listed.matchAll(
    new RegExp(`comment "lab:impair ${link.network.name} loss [^"]*" # handle (\\d+)`, 'g'),
  )) {
    await $({ quiet: true })`nft delete rule bridge ${BRIDGE_TABLE} impair handle ${m[1]}`
  }
  if (loss === undefined) {
    if (!/comment "lab:impair /.test((await $({ quiet: true })`nft list chain bridge ${BRIDGE_TABLE} impair`).stdout))
      await $({ quiet: true })`nft delete table bridge ${BRIDGE_TABLE}`
    return
  }
  const ports = bridgePorts(bridge)
  if (ports.length === 0)
    throw new Error(
      `network ${link.network.name}: its bridge ${bridge} has no hosts attached; is the lab up? npm run lab`,
    )
  await $({ quiet: true })`nft add rule bridge ${BRIDGE_TABLE} impair ${bridgeRule(link.network.name, ports, loss)}`
}

export async function impair(
  link: Link,
  opts: { loss?: number; delayMs?: number; clear?: boolean },
  log: (m: string) => void,
): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new UsageError('lab:impair changes firewall rules: run it as root (sudo npm run lab:impair -- ...)')
  const name = linkName(link)
  if (!opts.clear && opts.loss === undefined && opts.delayMs === undefined)
    throw new UsageError('say what to do: --loss PERCENT, --delay MS, or --clear')
  if (opts.delayMs && link.kind === 'network') {
    throw new UsageError(
      `--delay on network ${name}: delay needs netem (sch_netem), which this machine's kernel does not have; loss works (--loss, with nftables). On a VM host, delay one of its interfaces instead (host:interface)`,
    )
  }
  const rest = recorded().filter((i) => i.link !== name)
  if (link.kind === 'network') {
    await applyNetwork(link, opts.clear ? undefined : (opts.loss ?? 0))
  } else {
    const host = await connect(link.host)
    try {
      const dev = await deviceOf(host, link)
      const script = opts.clear
        ? `nft delete table inet ${HOST_TABLE} 2>/dev/null || true\ntc qdisc del dev ${dev} root 2>/dev/null || true`
        : hostScript(dev, opts.loss ?? 0, opts.delayMs)
      const r = await host.exec(script, { check: false })
      if (r.code !== 0) {
        await host.exec(`nft delete table inet ${HOST_TABLE} 2>/dev/null || true`, { check: false })
        if (r.stdout.includes('NO_NETEM'))
          throw new UsageError(
            `--delay on ${name}: delay needs netem (sch_netem), which ${link.host.name}'s kernel does not have (a container shares this machine's kernel); loss works (--loss)`,
          )
        throw new Error(`${name}: ${r.stderr.trim()}`)
      }
    } finally {
      await host.close()
    }
  }
  if (opts.clear) {
    record(rest)
    log(`${name}: impairment cleared`)
  } else {
    record([
      ...rest,
      {
        link: name,
        loss: opts.loss ?? 0,
        ...(opts.delayMs ? { delayMs: opts.delayMs } : {}),
        since: new Date().toISOString(),
      },
    ])
    log(
      `${name}: ${opts.loss ?? 0}% loss${opts.delayMs ? `, ${opts.delayMs} ms delay` : ''} (until npm run lab:impair -- ${name} --clear, or lab:down)`,
    )
  }
}

/** lab:down: the bridge table goes (the hosts go with their own rules); nothing recorded. */
export async function clearAllImpairments(log: (m: string) => void): Promise<void> {
  if (await impairmentTableExists()) {
    await $({ quiet: true })`nft delete table bridge ${BRIDGE_TABLE}`
    log(`Removed the link impairments (nft table bridge ${BRIDGE_TABLE})`)
  }
  record([])
}

export async function impairmentTableExists(): Promise<boolean> {
  return (await $({ quiet: true, nothrow: true })`nft list table bridge ${BRIDGE_TABLE}`).exitCode === 0
}
