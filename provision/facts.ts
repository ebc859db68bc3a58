// What the provisioner learns from a host before changing it: its interfaces and
// addresses, which one is management, and what the platform is. Roles branch on
// facts and on the plan, never on a host's name.
import type { RemoteHost } from './ssh.js'
import type { Host } from './plan.js'

export interface Address {
  ifname: string
  address: string
  prefix: number
}

export interface Facts {
  addresses: Address[]
  /** The interface the provisioner's SSH arrives on (lxc: named mgmt; VMs: the NAT one). */
  mgmtInterface: string
  /** e.g. lxc, kvm, oracle, none (systemd-detect-virt). */
  virtualization: string
  kernel: string
  /** lab network name -> interface name on this host */
  interfaceOf: Record<string, string>
  /** Gateways only: kernel ESP (XFRM) if the kernel has rfc7539esp(chacha20,poly1305), else libipsec. */
  ipsecMode?: IpsecMode
}

export type IpsecMode = 'kernel' | 'libipsec'

/**
 * Probe, don't assume: try to install (then remove) an ESP state with the lab's cipher.
 * Loopback addresses and an SPI of our own, so it can never match real traffic.
 */
export const ESP_PROBE = [
  'ip xfrm state add src 127.0.0.1 dst 127.0.0.1 proto esp spi 0x1ab0e5b1 mode tunnel',
  `aead 'rfc7539esp(chacha20,poly1305)' 0x${'42'.repeat(36)} 128 2>/dev/null`,
  '&& ip xfrm state delete src 127.0.0.1 dst 127.0.0.1 proto esp spi 0x1ab0e5b1 && echo kernel || echo libipsec',
].join(' ')

interface IpAddrJson {
  ifname: string
  addr_info: { family: string; local: string; prefixlen: number }[]
}

export async function gatherFacts(host: RemoteHost, self: Host): Promise<Facts> {
  const r = await host.exec(
    'ip -j -4 addr show; echo; ip -j -4 route show default; echo; systemd-detect-virt || true; uname -r',
    { sudo: false },
  )
  // One line each; `ip -j` ends its own with a newline, so the echoes leave blank lines
  // between them (read as the fields once, which made every host's virtualization "[]").
  const [addrJson, routeJson, virt, kernel] = r.stdout.split('\n').filter((l) => l.trim() !== '')
  const addresses: Address[] = (JSON.parse(addrJson) as IpAddrJson[]).flatMap((i) =>
    i.addr_info
      .filter((a) => a.family === 'inet')
      .map((a) => ({ ifname: i.ifname, address: a.local, prefix: a.prefixlen })),
  )
  const interfaceOf: Record<string, string> = {}
  for (const iface of self.interfaces) {
    const found = addresses.find((a) => a.address === iface.address)
    if (found) interfaceOf[iface.network] = found.ifname
  }
  const defaultRoute = (JSON.parse(routeJson || '[]') as { dev: string }[])[0]
  // lxc: the management address is the container's own; VMs: SSH comes in on the
  // NAT interface, which holds the default route.
  const mgmtInterface = interfaceOf[self.mgmt.network] ?? defaultRoute?.dev
  if (!mgmtInterface)
    throw new Error(
      `cannot tell which interface of ${self.name} is management: no address ${self.mgmt.address} and no default route`,
    )
  const ipsecMode =
    self.role === 'gateway'
      ? ipsecModeFor((await host.exec(ESP_PROBE)).stdout.trim() as IpsecMode, self.name)
      : undefined
  return {
    addresses,
    mgmtInterface,
    virtualization: (virt ?? '').trim(),
    kernel: (kernel ?? '').trim(),
    interfaceOf,
    ipsecMode,
  }
}

/**
 * The data path a gateway uses: what its kernel allows, unless LAB_IPSEC_MODE=libipsec
 * forces userspace ESP where the kernel could do it (the benchmark compares the two on
 * the same VMs). Kernel ESP cannot be forced where the kernel has none.
 */
export function ipsecModeFor(probed: IpsecMode, host: string, env: NodeJS.ProcessEnv = process.env): IpsecMode {
  const forced = env.LAB_IPSEC_MODE
  if (!forced || forced === 'auto') return probed
  if (forced !== 'kernel' && forced !== 'libipsec')
    throw new Error(`LAB_IPSEC_MODE=${forced} is not known: use auto, kernel or libipsec`)
  if (forced === 'kernel' && probed !== 'kernel')
    throw new Error(
      `LAB_IPSEC_MODE=kernel, but ${host}'s kernel has no rfc7539esp(chacha20,poly1305): it can only do libipsec`,
    )
  return forced
}
