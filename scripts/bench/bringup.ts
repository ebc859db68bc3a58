// Bring-up costs: a re-provision that changes nothing (always; it is harmless), and,
// only when asked (--bringup, as it rebuilds the lab), a warm `npm run lab` (box
// cached, no containers) and a cold one (box rebuilt from Debian packages).
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { provision } from '../../provision/run.js'
import { summarize } from '../../provision/report.js'
import type { Plan } from '../../provision/plan.js'
import { boxName } from '../lib/box.js'
import { labDown, labUp } from '../lib/lab.js'
import { cacheDir, repoRoot, stateDir } from '../../provision/paths.js'
import { figure, type Figure } from './stats.js'

export interface BringUp {
  reprovision_s: Figure
  reprovision_changed: number
  warm?: { total_s: number; vagrant_up_s: number; provision_s: number }
  cold?: { total_s: number; box_s: number; vagrant_up_s: number; provision_s: number }
}

export async function reprovisionBench(
  plan: Plan,
  runs: number,
  log: (m: string) => void,
): Promise<Pick<BringUp, 'reprovision_s' | 'reprovision_changed'>> {
  const secs: number[] = []
  let changed = 0
  for (let i = 0; i < runs; i++) {
    const t0 = Date.now()
    const recaps = await provision({ plan, repoRoot, stateDir })
    const s = summarize(recaps)
    secs.push((Date.now() - t0) / 1000)
    changed += s.changed
    // Something changed: say what (a bench step that did not put the lab back).
    for (const r of recaps)
      for (const x of r.steps.filter((y) => y.status === 'changed')) log(`  changed on ${r.host}: ${x.name}`)
    if (s.failed + s.unreachable) throw new Error('a re-provision failed: run `npm run provision` to see why')
  }
  log(`Re-provision with nothing to change: ${secs.map((s) => s.toFixed(1)).join(', ')} s (${changed} changes)`)
  return { reprovision_s: figure(secs), reprovision_changed: changed }
}

const total = (s: Record<string, number>) => Object.values(s).reduce((a, b) => a + b, 0)

/** Destroys and rebuilds the lab twice: warm, then cold (the box rebuilt). Minutes. */
export async function bringUpBench(log: (m: string) => void): Promise<Pick<BringUp, 'warm' | 'cold'>> {
  // The lab's own output is kept, and shown only if a bring-up fails.
  const kept: string[] = []
  const quiet = (m: string) => {
    kept.push(m)
  }
  try {
    return await warmThenCold(log, quiet)
  } catch (e) {
    log(kept.slice(-40).join('\n'))
    throw e
  }
}

async function warmThenCold(
  log: (m: string) => void,
  quiet: (m: string) => void,
): Promise<Pick<BringUp, 'warm' | 'cold'>> {
  log('Bring-up, warm: lab down, then npm run lab with the box cached')
  await labDown(quiet)
  const warm = await labUp(quiet)
  log(`  ${total(warm.seconds).toFixed(0)} s`)
  log('Bring-up, cold: lab down, box removed, then npm run lab (box build included)')
  await labDown(quiet)
  const name = boxName()
  const file = path.join(cacheDir, `${name}.box`)
  const aside = `${file}.bench-aside`
  await $({ quiet: true, nothrow: true })`vagrant box remove --force ${name}`
  if (fs.existsSync(file)) fs.renameSync(file, aside)
  let cold
  try {
    cold = await labUp(quiet)
    fs.rmSync(aside, { force: true })
  } catch (e) {
    // Put the old box back so that the next `npm run lab` does not depend on a mirror.
    if (fs.existsSync(aside) && !fs.existsSync(file)) fs.renameSync(aside, file)
    throw e
  }
  log(`  ${total(cold.seconds).toFixed(0)} s`)
  return {
    warm: { total_s: total(warm.seconds), vagrant_up_s: warm.seconds.vagrant_up, provision_s: warm.seconds.provision },
    cold: {
      total_s: total(cold.seconds),
      box_s: cold.seconds.box,
      vagrant_up_s: cold.seconds.vagrant_up,
      provision_s: cold.seconds.provision,
    },
  }
}
