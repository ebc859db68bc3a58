// Helpers for the VPN scenarios, in the spirit of strongSwan's testing/: read SAs the
// way `swanctl --list-sas --raw` prints them, poll instead of sleeping, capture on the
// wire, and always put back what a scenario changed.
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseRawSas, type IkeSa } from '../../provision/lib/swanctl.js'
import type { Lab } from './lab.js'

export { parseRawSas, type ChildSa, type IkeSa } from '../../provision/lib/swanctl.js'

export async function listSas(lab: Lab, gw: string, conn?: string): Promise<IkeSa[]> {
  const r = await lab.sh(gw, `swanctl --list-sas --raw${conn ? ` --ike ${conn}` : ''}`)
  return parseRawSas(r.stdout)
}

export const installed = (sas: IkeSa[]) =>
  sas.some((s) => s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED'))

/** Both ends hold the same child SA: what one sends with is what the other receives. */
function samePair(site: IkeSa[], hub: IkeSa[]): boolean {
  const children = (sas: IkeSa[]) => sas.flatMap((s) => s.children.filter((c) => c.state === 'INSTALLED'))
  return children(site).some((c) => children(hub).some((d) => c.fields['spi-in'] === d.fields['spi-out'] && c.fields['spi-out'] === d.fields['spi-in']))
}

/** Poll until the tunnel is up on both ends, as one and the same SA pair; returns the seconds it took. */
export async function waitForTunnel(lab: Lab, tunnel: { name: string; site: string; hub: string }, timeoutMs = 30000): Promise<number> {
  const t0 = Date.now()
  while (Date.now() - t0 < timeoutMs) {
    const [a, b] = await Promise.all([listSas(lab, tunnel.site, tunnel.name), listSas(lab, tunnel.hub, tunnel.name)])
    if (installed(a) && installed(b) && samePair(a, b)) return (Date.now() - t0) / 1000
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`tunnel ${tunnel.name} not up on both ${tunnel.site} and ${tunnel.hub} within ${timeoutMs / 1000} s`)
}

/**
 * Poll until neither end holds an ESTABLISHED IKE SA of the tunnel. Half-open ones may
 * come and go: a site whose connection starts by itself (start_action = start,
 * keyingtries = 0) keeps trying, and under emulation an attempt is always under way.
 */
export async function waitForNoEstablished(lab: Lab, tunnel: { name: string; site: string; hub: string }, timeoutMs = 30000): Promise<void> {
  const t0 = Date.now()
  while (Date.now() - t0 < timeoutMs) {
    const [a, b] = await Promise.all([listSas(lab, tunnel.site, tunnel.name), listSas(lab, tunnel.hub, tunnel.name)])
    if (![...a, ...b].some((s) => s.state === 'ESTABLISHED')) return
    await new Promise((r) => setTimeout(r, 200))
  }
  const show = async (gw: string) => `${gw}: ${(await listSas(lab, gw, tunnel.name)).map((s) => `${s.state} (${s.fields['local-id']} to ${s.fields['remote-id']}, established ${s.fields.established ?? '?'} s)`).join(', ') || 'none'}`
  throw new Error(`tunnel ${tunnel.name} still has an ESTABLISHED SA after ${timeoutMs / 1000} s: ${await show(tunnel.site)}; ${await show(tunnel.hub)}`)
}

/** Poll until neither end has an SA of the tunnel. */
export async function waitForNoSa(lab: Lab, tunnel: { name: string; site: string; hub: string }, timeoutMs = 30000): Promise<void> {
  const t0 = Date.now()
  while (Date.now() - t0 < timeoutMs) {
    const [a, b] = await Promise.all([listSas(lab, tunnel.site, tunnel.name), listSas(lab, tunnel.hub, tunnel.name)])
    if (a.length === 0 && b.length === 0) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`tunnel ${tunnel.name} still has SAs after ${timeoutMs / 1000} s`)
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Capture on a host's interface while `during` runs; returns the packets as
 * `tcpdump -nn -r` prints them, and the payload as ASCII (-A) to search for markers.
 */
export async function capture(lab: Lab, host: string, dev: string, during: () => Promise<void>): Promise<{ lines: string[]; ascii: string }> {
  const file = `/tmp/lab-capture-${dev}-${Date.now()}.pcap`
  await lab.sh(host, `rm -f ${file}; (tcpdump -i ${dev} --immediate-mode -nn -U -s 0 -w ${file} >/dev/null 2>${file}.err & echo $! > ${file}.pid)`)
  // Capture starts when tcpdump says it is listening, not when its file appears.
  for (let i = 0; i < 50 && (await lab.sh(host, `grep -q 'listening on' ${file}.err`)).code !== 0; i++) await sleep(100)
  try {
    await during()
    await sleep(300)
  } finally {
    await lab.sh(host, `kill $(cat ${file}.pid); sleep 0.3`)
  }
  const lines = (await lab.sh(host, `tcpdump -nn -r ${file} 2>/dev/null`)).stdout.split('\n').filter(Boolean)
  const ascii = (await lab.sh(host, `tcpdump -nn -A -r ${file} 2>/dev/null; rm -f ${file} ${file}.pid ${file}.err`)).stdout
  return { lines, ascii }
}


/**
 * Capture on the wire itself: the lab network's bridge on this machine, a neutral
 * observer between the hosts. A capture inside a gateway is no view of the wire when
 * the kernel does ESP: packets it decrypts re-enter on the very interface the ESP came
 * in on, and tcpdump there shows them in clear as well.
 */
export async function captureWire(lab: Lab, network: string, during: () => Promise<void>): Promise<{ lines: string[]; ascii: string }> {
  const bridge = lab.topology.networks.find((n) => n.name === network)?.bridge
  if (!bridge) throw new Error(`no network ${network} in the topology`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-wire-'))
  const file = path.join(dir, `${network}.pcap`)
  const child = spawn('tcpdump', ['-i', bridge, '--immediate-mode', '-nn', '-U', '-s', '0', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] })
  const listening = new Promise<void>((resolve, reject) => {
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); if (err.includes('listening on')) resolve() })
    child.on('exit', (code) => reject(new Error(`tcpdump on ${bridge} exited with ${code}: ${err.trim()}`)))
  })
  await Promise.race([listening, sleep(10000).then(() => { throw new Error(`tcpdump on ${bridge} did not start listening within 10 s`) })])
  try {
    await during()
    await sleep(300)
  } finally {
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGTERM')
    await exited
  }
  try {
    const lines = execFileSync('tcpdump', ['-nn', '-r', file], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 }).toString().split('\n').filter(Boolean)
    const ascii = execFileSync('tcpdump', ['-nn', '-A', '-r', file], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 }).toString()
    return { lines, ascii }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
