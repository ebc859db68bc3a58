// The benchmark's hold on the running lab: SSH to every host, files it puts there
// only for the run (under /run/lab-bench, removed after), firewall openings it needs
// for a measurement (tagged, removed after, and removed first if a killed run left
// any), and the IoT client paused so that its stream does not blur the figures.
import { connectHosts, type Hosts } from '../../provision/hosts.js'
import { CLIENT_CONTROL_PORT } from '../../provision/ports.js'
import { shellQuote as q, type ExecResult } from '../../provision/ssh.js'
import type { Plan } from '../../provision/plan.js'
import { repoRoot } from '../../provision/paths.js'
import { holdersOf } from '../lib/vrrp-holders.js'

export const BENCH_DIR = '/run/lab-bench'
const TAG = 'lab-bench: temporary'

export interface BenchLab {
  plan: Plan
  sh(host: string, cmd: string, opts?: { stdin?: string; timeoutMs?: number }): Promise<ExecResult>
  /** Run and fail loudly on a non-zero exit. */
  must(host: string, cmd: string, opts?: { stdin?: string }): Promise<string>
  put(host: string, name: string, content: string): Promise<string>
  /** Admit one more thing in a host's nftables input chain until the run ends. */
  allow(host: string, rule: string): Promise<void>
  close(): Promise<void>
}

/**
 * `resumeClient: false`: the client stays paused after close (a measurement that is
 * about to change the lab under it resumes it itself, once the lab is whole again).
 */
export async function openBenchLab(plan: Plan, o: { resumeClient?: boolean } = {}): Promise<BenchLab> {
  const hosts: Hosts = await connectHosts(plan.hosts, repoRoot)
  const touched = new Set<string>()
  const exec = (host: string, cmd: string, opts: { stdin?: string } = {}) =>
    hosts.get(host).exec(cmd, { check: false, ...opts })
  /** A host's name, or a group's (the hub pair's, say): then its member active now. */
  const member = async (name: string) => {
    const group = plan.vrrp.find((g) => g.name === name)
    if (!group) return name
    const held = await holdersOf(exec, group)
    if (held.length !== 1)
      throw new Error(
        `group ${name}: ${held.length ? `${held.join(' and ')} all hold` : 'no member holds'} ${group.addresses[0].address}; see npm run lab:status`,
      )
    return held[0]
  }
  const sh = async (host: string, cmd: string, opts: { stdin?: string } = {}) => exec(await member(host), cmd, opts)
  const must = async (name: string, cmd: string, opts: { stdin?: string } = {}) => {
    const host = await member(name)
    const r = await exec(host, cmd, opts)
    if (r.code !== 0)
      throw new Error(
        `${host}: \`${cmd.slice(0, 120)}\` failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`,
      )
    return r.stdout
  }
  const removeRules = (host: string) =>
    exec(
      host,
      `nft -a list chain inet lab input 2>/dev/null | awk '/${TAG}/ {print $NF}' | while read h; do nft delete rule inet lab input handle "$h"; done`,
    )
  for (const h of plan.hosts) await removeRules(h.name)
  const clients = plan.hosts.filter((h) => h.role === 'iot-client').map((h) => h.name)
  for (const c of clients) await sh(c, `curl -s -m 5 -X POST http://127.0.0.1:${CLIENT_CONTROL_PORT}/pause >/dev/null`)
  return {
    plan,
    sh,
    must,
    async put(where, name, content) {
      const host = await member(where)
      touched.add(host)
      const p = `${BENCH_DIR}/${name}`
      await must(host, `mkdir -p -m 0700 ${BENCH_DIR} && umask 077 && cat > ${q(p)}`, { stdin: content })
      return p
    },
    async allow(name, rule) {
      const host = await member(name)
      touched.add(host)
      await must(host, `nft insert rule inet lab input ${rule} comment ${q(`"${TAG}"`)}`)
    },
    async close() {
      for (const h of touched) {
        await removeRules(h)
        await exec(h, `rm -rf ${BENCH_DIR}`)
      }
      if (o.resumeClient !== false)
        for (const c of clients)
          await sh(c, `curl -s -m 5 -X POST http://127.0.0.1:${CLIENT_CONTROL_PORT}/resume >/dev/null`)
      await hosts.close()
    },
  }
}
