// A test's scratch process and everything it started, ended together. A script killed
// alone leaves its children running: a stand-in it called just before the kill still
// writes into the scratch folder while the test removes it (ENOTEMPTY, seen in CI). So
// such a script is spawned `detached` (its own process group) and ended with the group.
import type { ChildProcess } from 'node:child_process'
import fs from 'node:fs'

/** Kills the process group `child` leads (spawned with `detached: true`) and waits for its leader's exit. */
export async function endGroup(child: ChildProcess | undefined): Promise<void> {
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch (e) {
    // The group is gone already (its leader exited between the check and the kill).
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e
    return
  }
  await exited
}

/** Ends the group, then removes its scratch folder (retrying what a dying member may still have written). */
export async function endGroupAndRemove(child: ChildProcess | undefined, dir: string): Promise<void> {
  await endGroup(child)
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
}
