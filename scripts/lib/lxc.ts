// LXC resources the lab owns, found by the lab's name prefix: containers left by an
// earlier clone or session (CI runs in a fresh clone on the same machine), stopped
// containers Vagrant cannot restart (vagrant-lxc appends its config again on each
// start as root), containers built from an outdated box, and leftover cgroups and
// mounts. Each is reused only when it is certainly this clone's and current.
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import type { Plan } from '../../provision/plan.js'
import { repoRoot } from '../../provision/paths.js'
import { knownMachines } from '../../provision/vagrant-state.js'

const LXC_PATH = '/var/lib/lxc'
const q = { quiet: true, nothrow: true }

export function labContainers(t: Plan): string[] {
  if (!fs.existsSync(LXC_PATH)) return []
  return fs
    .readdirSync(LXC_PATH)
    .filter((n) => n.startsWith(`${t.name}-`) && fs.existsSync(path.join(LXC_PATH, n, 'config')))
}

export async function containerRunning(name: string): Promise<boolean> {
  return (await $(q)`lxc-info -s -H -n ${name}`).stdout.trim() === 'RUNNING'
}

const config = (name: string) => fs.readFileSync(path.join(LXC_PATH, name, 'config'), 'utf8')
const builtFromBox = (name: string, box: string) => config(name).includes(`/boxes/${box}/`)

/**
 * Container names are the same in every clone, so a name this clone's .vagrant knows
 * may since have been recreated by another clone (CI runs beside a developer's). The
 * container's config names the clone whose hook script it runs: that is the owner.
 */
export function ownerClone(name: string): string | undefined {
  return /^lxc\.net\.0\.script\.up\s*=\s*(.+)\/scripts\/lxc-net-up\.sh$/m.exec(config(name))?.[1]
}

export async function destroyContainer(name: string): Promise<void> {
  await $(q)`lxc-stop -k -n ${name}`
  const r = await $(q)`lxc-destroy -f -n ${name}`
  if (r.exitCode !== 0 && fs.existsSync(path.join(LXC_PATH, name))) {
    throw new Error(`cannot remove container ${name}: ${r.stderr.trim()}. Remove it by hand: lxc-destroy -f -n ${name}`)
  }
}

/** Remove every lab container this clone cannot use; return what was removed and why. */
export async function removeStaleContainers(t: Plan, box: string, log: (m: string) => void): Promise<string[]> {
  const byContainer = new Map([...knownMachines('lxc')].map(([host, c]) => [c, host]))
  const removed: string[] = []
  for (const c of labContainers(t)) {
    const host = byContainer.get(c)
    let why: string | undefined
    const owner = ownerClone(c)
    if (!host) why = 'left by another clone or session'
    else if (owner !== repoRoot) why = `recreated since by another clone (${owner ?? 'unknown'})`
    else if (!t.hosts.some((h) => h.name === host)) why = `host ${host} is no longer in the topology`
    else if (!builtFromBox(c, box)) why = `built from an older box (the current one is ${box})`
    else if (!(await containerRunning(c))) why = 'stopped (vagrant-lxc cannot restart it as root; it is recreated)'
    if (!why) continue
    log(`Removing container ${c}: ${why}`)
    await destroyContainer(c)
    if (host) fs.rmSync(path.join(repoRoot, '.vagrant', 'machines', host), { recursive: true, force: true })
    removed.push(c)
  }
  return removed
}

/** cgroup folders and mounts that outlived the lab's containers. */
export function leftovers(t: Plan): { cgroups: string[]; mounts: string[] } {
  const running = new Set(labContainers(t))
  const cgroups: string[] = []
  const root = '/sys/fs/cgroup'
  const walk = (dir: string, depth: number) => {
    if (depth > 2 || !fs.existsSync(dir)) return
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue
      const m = /^lxc\.(?:payload|monitor|pivot)\.(.+)$/.exec(e.name)
      if (m && m[1].startsWith(`${t.name}-`) && !running.has(m[1])) cgroups.push(path.join(dir, e.name))
      else if (!e.name.startsWith('lxc.')) walk(path.join(dir, e.name), depth + 1)
    }
  }
  walk(root, 0)
  const mounts = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((m) => m && m.startsWith(`${LXC_PATH}/${t.name}-`))
  return { cgroups, mounts }
}

export async function removeLeftovers(t: Plan, log: (m: string) => void): Promise<void> {
  const { cgroups, mounts } = leftovers(t)
  for (const m of mounts.reverse()) {
    log(`Unmounting ${m}`)
    await $(q)`umount -l ${m}`
  }
  // Deepest first: a cgroup folder can only go once its children have.
  for (const c of cgroups.sort((a, b) => b.length - a.length)) {
    await $(q)`find ${c} -depth -type d -exec rmdir {} +`
    if (!fs.existsSync(c)) log(`Removed leftover cgroup ${c}`)
  }
}
