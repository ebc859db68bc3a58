// npm run lab:fault: a whole host fails as hosts do in production: it stops dead (a
// power cut: nothing flushed, no goodbye to its peers), it hangs (every process frozen:
// its kernel still answers pings and completes TCP handshakes, nothing above answers),
// or its cables are pulled (every lab link down; management kept, so the host can be
// watched and put back). The host's provider makes each fault (provider-*.ts, faults),
// nothing here branches on a provider's name. Each fault is recorded in
// .lab/faults.json (lab:status lists it) and undone by --clear, which reads the
// machine's own state, so it also mends a fault whose record was lost.
import net from 'node:net'
import type { Host, Plan } from '../../provision/plan.js'
import { waitFor } from '../../provision/lib/wait.js'
import { repoRoot } from '../../provision/paths.js'
import type { MachineRecord } from '../../provision/vagrant-state.js'
import type { HostFaults } from './provider-types.js'
import { recordList } from './records.js'
import { UsageError } from './links.js'
import { machineOf } from './providers.js'
import { vagrantStates } from './vagrant.js'

export const HOST_FAULTS = ['stop', 'freeze', 'isolate'] as const
export type HostFault = (typeof HOST_FAULTS)[number]

export interface FaultRecord {
  host: string
  fault: HostFault
  since: string
}

const faults = recordList<FaultRecord>('faults.json')
export const recordedFaults = () => faults.read()
const record = (list: FaultRecord[]) => faults.write(list)

/** lab:down: the machines are gone, and their faults with them. */
export const forgetFaults = () => record([])

export function faultHost(plan: Plan, name: string | undefined): Host {
  const names = plan.hosts.map((h) => h.name).join(', ')
  if (!name) throw new UsageError(`name the host: one of ${names}`)
  const host = plan.hosts.find((h) => h.name === name)
  if (!host) throw new UsageError(`no host ${JSON.stringify(name)} in the topology (${names})`)
  return host
}

/**
 * The first line the host's SSH server sends on its management address, or undefined
 * when none comes within timeoutMs (refused, unreachable, or accepted by a kernel whose
 * processes do not run: a frozen host completes the handshake and says nothing).
 */
export function sshBanner(address: string, timeoutMs = 3000, port = 22): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port })
    let data = ''
    const done = (v: string | undefined) => {
      socket.destroy()
      resolve(v)
    }
    const timer = setTimeout(() => done(undefined), timeoutMs)
    socket.on('data', (chunk) => {
      data += chunk.toString()
      const line = data.split('\r\n')[0]
      if (data.includes('\n') || line.length > 200) {
        clearTimeout(timer)
        done(line.trim())
      }
    })
    socket.on('error', () => {
      clearTimeout(timer)
      done(undefined)
    })
  })
}

/** Poll until the host's SSH server greets on management; seconds it took, or throw after timeoutMs. */
export async function waitForSsh(host: Host, timeoutMs: number): Promise<number> {
  const t0 = Date.now()
  await waitFor(
    `${host.name}'s SSH server to greet on ${host.mgmt.address} (\`npm run lab:status\`; \`npm run lab\` remakes it)`,
    async () => (await sshBanner(host.mgmt.address, 2000))?.startsWith('SSH-'),
    timeoutMs,
    500,
  )
  return (Date.now() - t0) / 1000
}

/**
 * Vagrant's words for a machine's state, as each provider spells them, in three: the
 * host runs, is paused whole (lxc: frozen; libvirt: paused; VirtualBox: paused), or is off.
 */
export type Condition = 'running' | 'frozen' | 'stopped' | 'other'
export function condition(state: string | undefined): Condition {
  if (state === 'running') return 'running'
  if (state === 'frozen' || state === 'paused') return 'frozen'
  if (state && ['stopped', 'shutoff', 'poweroff', 'aborted', 'saved'].includes(state)) return 'stopped'
  return 'other'
}

/** The machine's state from its provider (milliseconds), else from `vagrant status` (VirtualBox). */
export async function stateOf(host: Host, cwd = repoRoot) {
  const { machine, ops } = machineOf(host.name, cwd)
  const s = (await ops.state(machine.id)) ?? (await vagrantStates(cwd)).get(host.name)
  return { machine, ops, state: s, condition: condition(s) }
}

/** How long a started host may take to greet: a container seconds, an emulated VM minutes. */
export const START_MS = Number(process.env.LAB_START_MS || 300_000)

/** Make one fault on one host; refused when the host is not running or already faulted. */
export async function makeFault(
  plan: Plan,
  host: Host,
  fault: HostFault,
  log: (m: string) => void,
  cwd = repoRoot,
): Promise<void> {
  const { machine, ops, state, condition } = await stateOf(host, cwd)
  const earlier = recordedFaults().find((f) => f.host === host.name)
  if (earlier || condition !== 'running')
    throw new UsageError(
      `${host.name} is ${earlier ? `already under a fault (${earlier.fault} since ${earlier.since})` : (state ?? 'in a state its provider does not say')}, not a running host: \`npm run lab:fault -- ${host.name} --clear\` first`,
    )
  // Recorded first: a fault that fails halfway is still found and cleared.
  record([...recordedFaults(), { host: host.name, fault, since: new Date().toISOString() }])
  await FAULTS[fault].make(ops.faults, machine, host, plan)
  log(`${host.name} (${ops.label()}): ${FAULTS[fault].what}; undo with \`npm run lab:fault -- ${host.name} --clear\``)
}

/** Each fault: the provider's operation that makes it, and what it did, as the log says it. */
const FAULTS: Record<
  HostFault,
  { what: string; make: (f: HostFaults, m: MachineRecord, host: Host, plan: Plan) => Promise<void> }
> = {
  stop: { what: 'stopped hard (a power cut)', make: (f, m) => f.stopHard(m) },
  freeze: { what: 'frozen (every process paused)', make: (f, m) => f.freeze(m) },
  isolate: { what: 'cut off from its lab networks (management kept)', make: (f, m, h, p) => f.isolate(m, h, p) },
}

/**
 * Undo whatever fault the host is under, from the machine's own state: a frozen host
 * is thawed, a stopped one started (and waited for until its SSH server greets), its
 * lab links set up again. Returns what was done; an empty list: there was nothing to undo.
 */
export async function clearFault(plan: Plan, host: Host, log: (m: string) => void, cwd = repoRoot): Promise<string[]> {
  const done: string[] = []
  const rec = recordedFaults().find((f) => f.host === host.name)
  let now = await stateOf(host, cwd)
  const { machine, ops } = now
  if (now.condition === 'frozen') {
    await ops.faults.thaw(machine)
    done.push('thawed')
    now = await stateOf(host, cwd)
  }
  if (now.condition === 'stopped') {
    await ops.faults.start(machine)
    const s = await waitForSsh(host, START_MS)
    done.push(`started (SSH greets after ${s.toFixed(1)} s)`)
    now = await stateOf(host, cwd)
  }
  if (now.condition !== 'running')
    throw new Error(
      `${host.name}: ${ops.label()} says it is ${now.state ?? 'in an unknown state'} after the undo: \`npm run lab\` remakes it`,
    )
  // A started host's links come up with it; a running one may have been isolated.
  if (rec?.fault === 'isolate' || !done.length) {
    await ops.faults.rejoin(machine, host, plan)
    if (rec?.fault === 'isolate') done.push('links up again')
  }
  record(recordedFaults().filter((f) => f.host !== host.name))
  log(`${host.name}: ${done.length ? done.join(', ') : 'under no fault; nothing to undo'}`)
  return done
}
