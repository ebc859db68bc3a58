// What the operator's commands leave in force on the lab (link impairments, host
// faults), kept as a JSON list in .lab/ (0600 in a 0700 folder) so that lab:status can
// list it and --clear or lab:down can undo it, from another process, after a crash.
import fs from 'node:fs'
import path from 'node:path'
import { stateDir } from '../../provision/paths.js'

export interface RecordList<T> {
  read(): T[]
  /** Replace the list; an empty one removes the file. */
  write(list: T[]): void
}

export function recordList<T>(name: string): RecordList<T> {
  const file = () => path.join(stateDir, name)
  return {
    read() {
      try {
        return JSON.parse(fs.readFileSync(file(), 'utf8')) as T[]
      } catch {
        return []
      }
    },
    write(list) {
      fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 })
      if (list.length) fs.writeFileSync(file(), JSON.stringify(list, null, 2) + '\n', { mode: 0o600 })
      else fs.rmSync(file(), { force: true })
    },
  }
}
