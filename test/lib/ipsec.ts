// Helpers for the VPN scenarios, in the spirit of strongSwan's testing/: read SAs the
// way `swanctl --list-sas --raw` prints them, poll instead of sleeping, capture on the
// wire, and always put back what a scenario changed.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseRawSas, type IkeSa } from '../../services/lib/swanctl.js'
import { waitFor, type Lab } from './lab.js'
import { capture as captureOn } from '../../scripts/lib/capture.js'
import { parseLink } from '../../scripts/lib/links.js'

export { parseRawSas, type ChildSa, type IkeSa } from '../../services/lib/swanctl.js'

export async function listSas(lab: Lab, gw: string, conn?: string): Promise<IkeSa[]> {
  const r = await lab.sh(gw, `swanctl --list-sas --raw${conn ? ` --ike ${conn}` : ''}`)
  return parseRawSas(r.stdout)
}

export const installed = (sas: IkeSa[]) =>
  sas.some((s) => s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED'))

/** Both ends hold the same child SA: what one sends with is what the other receives. */
function samePair(site: IkeSa[], hub: IkeSa[]): boolean {
  const children = (sas: IkeSa[]) => sas.flatMap((s) => s.children.filter((c) => c.state === 'INSTALLED'))
  return children(site).some((c) =>
    children(hub).some((d) => c.fields['spi-in'] === d.fields['spi-out'] && c.fields['spi-out'] === d.fields['spi-in']),
  )
}

type TunnelEnds = { name: string; site: string; hub: string }
/** The tunnel's SAs on its site and on its hub. */
const bothEnds = (lab: Lab, tunnel: TunnelEnds) =>
  Promise.all([listSas(lab, tunnel.site, tunnel.name), listSas(lab, tunnel.hub, tunnel.name)])

/** Poll until the tunnel is up on both ends, as one and the same SA pair; returns the seconds it took. */
export async function waitForTunnel(lab: Lab, tunnel: TunnelEnds, timeoutMs = 30000): Promise<number> {
  const t0 = Date.now()
  await waitFor(
    `tunnel ${tunnel.name} up on both ${tunnel.site} and ${tunnel.hub}, as one SA pair`,
    async () => {
      const [a, b] = await bothEnds(lab, tunnel)
      return installed(a) && installed(b) && samePair(a, b)
    },
    timeoutMs,
    200,
  )
  return (Date.now() - t0) / 1000
}

/**
 * Poll until the tunnel is settled: each end holds one IKE SA of it, ESTABLISHED, with
 * one child SA, INSTALLED, and they are the same pair. What an earlier scenario leaves
 * (a replaced IKE SA not yet deleted, a child SA being rekeyed or deleted) is gone, so
 * a scenario that judges every packet judges only what it does itself. Returns what was
 * there when the wait began, when it was not settled yet (for the log).
 */
export async function waitForSettledTunnel(
  lab: Lab,
  tunnel: TunnelEnds,
  timeoutMs = 60000,
): Promise<string | undefined> {
  const describe = (gw: string, sas: IkeSa[]) =>
    `${gw}: ${sas.map((s) => `${s.state} [${s.children.map((c) => c.state).join(', ') || 'no child'}]`).join(', ') || 'none'}`
  const settled = (sas: IkeSa[]) =>
    sas.length === 1 &&
    sas[0].state === 'ESTABLISHED' &&
    sas[0].children.length === 1 &&
    sas[0].children[0].state === 'INSTALLED'
  let first: string | undefined
  let last = ''
  try {
    await waitFor(
      `tunnel ${tunnel.name} settled: one IKE SA with one installed child SA on each end, the same pair`,
      async () => {
        const [a, b] = await bothEnds(lab, tunnel)
        const ok = settled(a) && settled(b) && samePair(a, b)
        last = `${describe(tunnel.site, a)}; ${describe(tunnel.hub, b)}`
        if (!ok) first ??= last
        return ok
      },
      timeoutMs,
      200,
    )
  } catch (e) {
    throw new Error(`${(e as Error).message}: ${last}`)
  }
  return first
}

/**
 * Poll until neither end holds an ESTABLISHED IKE SA of the tunnel. Half-open ones may
 * come and go: a site whose connection starts by itself (start_action = start,
 * keyingtries = 0) keeps trying, and under emulation an attempt is always under way.
 */
export async function waitForNoEstablished(lab: Lab, tunnel: TunnelEnds, timeoutMs = 30000): Promise<void> {
  try {
    await waitFor(
      `no ESTABLISHED SA of tunnel ${tunnel.name} on either end`,
      async () => {
        const [a, b] = await bothEnds(lab, tunnel)
        return ![...a, ...b].some((s) => s.state === 'ESTABLISHED')
      },
      timeoutMs,
      200,
    )
  } catch (e) {
    const show = async (gw: string) =>
      `${gw}: ${(await listSas(lab, gw, tunnel.name)).map((s) => `${s.state} (${s.fields['local-id']} to ${s.fields['remote-id']}, established ${s.fields.established ?? '?'} s)`).join(', ') || 'none'}`
    throw new Error(`${(e as Error).message}: ${await show(tunnel.site)}; ${await show(tunnel.hub)}`)
  }
}

/** Poll until neither end has an SA of the tunnel. */
export async function waitForNoSa(lab: Lab, tunnel: TunnelEnds, timeoutMs = 30000): Promise<void> {
  await waitFor(
    `no SA of tunnel ${tunnel.name} on either end`,
    async () => {
      const [a, b] = await bothEnds(lab, tunnel)
      return a.length === 0 && b.length === 0
    },
    timeoutMs,
    200,
  )
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Capture on a host's interface (the network it is on) while `during` runs, with the
 * operator's command (lab:capture's library); returns the packets as `tcpdump -nn -r`
 * prints them, and the payload as ASCII (-A) to search for markers.
 */
export function capture(
  lab: Lab,
  host: string,
  network: string,
  during: () => Promise<void>,
): Promise<{ lines: string[]; ascii: string }> {
  return captureLink(lab, `${host}:${network}`, during)
}

/** Capture on a network's bridge (every host's frames on it); views: more readings of the same capture through a tcpdump filter each (a leg between two hosts, say). */
export function captureWire<V extends string = never>(
  lab: Lab,
  network: string,
  during: () => Promise<void>,
  views: Record<V, string> = {} as Record<V, string>,
): Promise<{ lines: string[]; ascii: string; views: Record<V, { lines: string[]; ascii: string }> }> {
  return captureLink(lab, network, during, views)
}

async function captureLink<V extends string = never>(
  lab: Lab,
  target: string,
  during: () => Promise<void>,
  views: Record<V, string> = {} as Record<V, string>,
): Promise<{ lines: string[]; ascii: string; views: Record<V, { lines: string[]; ascii: string }> }> {
  // The operator's command (lab:capture's library), written to a pcap, read back twice.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-wire-'))
  const file = path.join(dir, 'capture.pcap')
  try {
    let ready: () => void = () => {}
    const listening = new Promise<void>((resolve) => {
      ready = resolve
    })
    const stop = new AbortController()
    const running = captureOn(
      lab.plan,
      parseLink(lab.plan, target, { allowManagement: true }),
      { count: 100_000, seconds: 120, write: file, signal: stop.signal },
      () => {},
      ready,
    )
    // Generous: inside an emulated VM, an SSH session and tcpdump's start can take many
    // seconds on a busy machine; the bound only means "it never started".
    try {
      await Promise.race([
        listening,
        running,
        sleep(60_000).then(() => {
          throw new Error(`the capture on ${target} did not start listening within 60 s`)
        }),
      ])
    } catch (e) {
      // Stopped and awaited before its folder goes: a capture left running would write
      // into a deleted file and fail a later test.
      stop.abort()
      await running.catch(() => {})
      throw e
    }
    try {
      await during()
      await sleep(300)
    } finally {
      stop.abort()
      await running
    }
    // tcpdump -r prints every whole packet even when the file's last one was cut short.
    const read = (args: string[]) =>
      spawnSync('tcpdump', ['-r', file, ...args], {
        stdio: ['ignore', 'pipe', 'ignore'],
        maxBuffer: 64 << 20,
      }).stdout.toString()
    const view = (filter: string[]) => ({
      lines: read(['-nn', ...filter])
        .split('\n')
        .filter(Boolean),
      ascii: read(['-nn', '-A', ...filter]),
    })
    const all = view([])
    const filtered = Object.fromEntries(
      Object.entries(views).map(([name, filter]) => [name, view(String(filter).split(' '))]),
    ) as Record<V, { lines: string[]; ascii: string }>
    return { ...all, views: filtered }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
