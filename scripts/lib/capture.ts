// npm run lab:capture: a bounded capture on any lab link, printed live or written for
// Wireshark. A network: tcpdump on its bridge on this machine (every host's frames
// on it). host:interface: on a container, the host side of its veth here; on a VM,
// tcpdump inside the guest, streamed back over SSH. Always bounded by a packet count
// and a time limit.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import type { Plan } from '../../provision/plan.js'
import { connect, deviceOf, linkName, type Link } from './links.js'
import { providerOps, runningProviders } from './providers.js'

export interface CaptureOptions {
  filter?: string
  count: number
  seconds: number
  write?: string
  /** Stop before the count or the time (a test's capture around what it does). */ signal?: AbortSignal
}

/** tcpdump's arguments for one bounded capture (pure: unit-tested). */
export function tcpdumpArgs(iface: string, o: CaptureOptions): string[] {
  return [
    '-i',
    iface,
    '-nn',
    '--immediate-mode',
    '-c',
    String(o.count),
    ...(o.write ? ['-U', '-s', '0', '-w', o.write === '-' ? '-' : o.write] : ['-l']),
    ...(o.filter ? [o.filter] : []),
  ]
}

/** tcpdump's printed output, chunk by chunk, as whole lines; end() passes on the last one. */
function lines(onLine: (l: string) => void) {
  let buffered = ''
  return {
    push(d: Buffer) {
      buffered += d.toString()
      const ls = buffered.split('\n')
      buffered = ls.pop()!
      ls.forEach(onLine)
    },
    end() {
      if (buffered) onLine(buffered)
      buffered = ''
    },
  }
}

/** tcpdump's own count lines from its stderr. */
const summaryOf = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => /packets? captured|received by filter/.test(l))
    .join('; ')

/**
 * Run the capture; resolves when tcpdump has its count or the time is up. Lines go to
 * onLine (printed captures); -w writes the pcap. Returns tcpdump's summary.
 */
export async function capture(
  t: Plan,
  link: Link,
  o: CaptureOptions,
  onLine: (l: string) => void,
  onReady?: () => void,
): Promise<{ summary: string; where: string }> {
  if (process.getuid?.() !== 0)
    throw new Error("lab:capture listens on the lab's interfaces: run it as root (sudo npm run lab:capture -- ...)")
  const provider = link.kind === 'interface' ? runningProviders().get(link.host.name) : undefined
  if (link.kind === 'interface' && !provider) throw new Error(`${link.host.name} is not running: npm run lab`)
  // A network: its bridge here. An interface: where its provider says (a container's
  // veth here, a VM's device inside the guest).
  const point = link.kind === 'interface' ? await providerOps(provider!).capturePoint(link) : undefined
  if (link.kind === 'interface' && point?.on === 'guest') {
    // A VM: tcpdump in the guest, its output streamed back.
    const host = await connect(link.host)
    try {
      const toFile = o.write ? fs.createWriteStream(o.write) : undefined
      const args = tcpdumpArgs(await deviceOf(host, link), { ...o, write: o.write ? '-' : undefined })
        .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
        .join(' ')
      let err = ''
      const out = lines(onLine)
      let listening = false
      // On abort, SIGINT (relayed by timeout): tcpdump writes its last packets and exits,
      // so a pcap ends whole.
      const pidFile = `/run/lab-capture-${process.pid}-${Date.now()}.pid`
      o.signal?.addEventListener(
        'abort',
        () => {
          void host.exec(`kill -INT $(cat ${pidFile}) 2>/dev/null`, { check: false })
        },
        { once: true },
      )
      const r = await host.execStream(
        `timeout ${o.seconds} tcpdump ${args} & echo $! > ${pidFile}; wait $!; rc=$?; rm -f ${pidFile}; exit $rc`,
        {
          onStdout: (d: Buffer) => {
            if (toFile) toFile.write(d)
            else out.push(d)
          },
          onStderr: (d: Buffer) => {
            err += d.toString()
            if (!listening && err.includes('listening on')) {
              listening = true
              onReady?.()
            }
          },
        },
      )
      out.end()
      await new Promise((res) => (toFile ? toFile.end(res) : res(undefined)))
      if (r.code !== 0 && r.code !== 124 && !o.signal?.aborted)
        throw new Error(`tcpdump on ${linkName(link)} failed: ${err.trim()}`)
      return { summary: summaryOf(err), where: `inside ${link.host.name} (${provider})` }
    } finally {
      await host.close()
    }
  }
  const iface = point?.on === 'machine' ? point.iface : link.kind === 'network' ? link.network.bridge : ''
  return new Promise((resolve, reject) => {
    const child = spawn('timeout', [String(o.seconds), 'tcpdump', ...tcpdumpArgs(iface, o)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // timeout passes SIGTERM on to tcpdump, which writes what it has and exits.
    o.signal?.addEventListener('abort', () => child.kill('SIGTERM'), { once: true })
    let err = ''
    let listening = false
    const out = lines(onLine)
    child.stdout.on('data', (d: Buffer) => out.push(d))
    // Once: tcpdump's summary comes on stderr too, after its "listening on" line.
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
      if (!listening && err.includes('listening on')) {
        listening = true
        onReady?.()
      }
    })
    child.on('error', reject)
    child.on('exit', (code) => {
      out.end()
      if (code !== 0 && code !== 124 && !o.signal?.aborted)
        return reject(new Error(`tcpdump on ${iface} failed: ${err.trim()}`))
      resolve({
        summary: summaryOf(err),
        where:
          link.kind === 'network' ? `bridge ${iface} on this machine` : `${iface}, the host side of ${linkName(link)}`,
      })
    })
  })
}
