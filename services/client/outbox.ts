// The client's durable outbox. A reading exists once it is on disk: each batch of
// readings is a segment file, written to a temporary name, fsynced, renamed, and the
// directory fsynced, together with the devices' last sequence numbers; only then is
// it sent. A segment is deleted when every reading in it is acknowledged. After a crash
// or restart, the segments still there are sent again: the server stores a device's
// sequence number once, so a reading acknowledged just before the crash is answered
// as a duplicate, not stored twice; and no sequence number is ever reused.
import fs from 'node:fs'
import path from 'node:path'

export interface Entry { device: string; seq: number; body: string; segment: string }

interface Segment { entries: Entry[]; open: number }

const SEGMENT = /^seg-(\d+)\.json$/

export class Outbox {
  private segments = new Map<string, Segment>()
  private lastSeq = new Map<string, number>()
  private nextSegment = 1
  rejectedCount = 0
  ackedCount = 0

  constructor(readonly dir: string) {}

  /** Recover what is on disk: unsent readings, every device's last sequence number. */
  open(): Entry[] {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    for (const f of fs.readdirSync(this.dir)) if (f.endsWith('.tmp')) fs.rmSync(path.join(this.dir, f)) // never renamed: never sent
    const state = this.readJson<Record<string, number>>('state.json') ?? {}
    for (const [d, s] of Object.entries(state)) this.lastSeq.set(d, s)
    const pending: Entry[] = []
    for (const f of fs.readdirSync(this.dir).filter((n) => SEGMENT.test(n)).sort()) {
      const entries = (this.readJson<Omit<Entry, 'segment'>[]>(f) ?? []).map((e) => ({ ...e, segment: f }))
      this.segments.set(f, { entries, open: entries.length })
      this.nextSegment = Math.max(this.nextSegment, Number(SEGMENT.exec(f)![1]) + 1)
      for (const e of entries) {
        // The segment is durable before the state file: take the larger.
        if (e.seq > (this.lastSeq.get(e.device) ?? 0)) this.lastSeq.set(e.device, e.seq)
        pending.push(e)
      }
    }
    const rejected = path.join(this.dir, 'rejected.jsonl')
    if (fs.existsSync(rejected)) this.rejectedCount = fs.readFileSync(rejected, 'utf8').split('\n').filter(Boolean).length
    return pending
  }

  last(device: string) { return this.lastSeq.get(device) ?? 0 }
  devices() { return Object.fromEntries(this.lastSeq) }
  pending() { let n = 0; for (const s of this.segments.values()) n += s.open; return n }
  generated() { let n = 0; for (const s of this.lastSeq.values()) n += s; return n }

  /**
   * Make readings durable: one segment, the devices' new last sequence numbers, one
   * directory fsync. Only what this returns may be sent.
   */
  append(readings: { device: string; seq: number; body: string }[]): Entry[] {
    if (readings.length === 0) return []
    const name = `seg-${String(this.nextSegment++).padStart(12, '0')}.json`
    const next = new Map(this.lastSeq)
    for (const r of readings) {
      if (r.seq !== (next.get(r.device) ?? 0) + 1) throw new Error(`outbox: ${r.device} seq ${r.seq} is not the next one`)
      next.set(r.device, r.seq)
    }
    this.writeDurably([[name, readings], ['state.json', Object.fromEntries(next)]])
    this.lastSeq = next
    const entries = readings.map((r) => ({ ...r, segment: name }))
    this.segments.set(name, { entries, open: entries.length })
    return entries
  }

  /** The server has the reading: once a segment has no reading left, it goes. */
  ack(e: Entry) {
    this.ackedCount++
    this.close(e)
  }

  /** The server refused the reading for good (malformed): kept aside for a person, not retried. */
  reject(e: Entry, status: number, reason: string) {
    const fd = fs.openSync(path.join(this.dir, 'rejected.jsonl'), 'a', 0o600)
    try {
      fs.writeSync(fd, JSON.stringify({ device: e.device, seq: e.seq, status, reason, body: e.body }) + '\n')
      fs.fsyncSync(fd)
    } finally { fs.closeSync(fd) }
    this.rejectedCount++
    this.close(e)
  }

  private close(e: Entry) {
    const seg = this.segments.get(e.segment)
    if (!seg) return
    if (--seg.open === 0) {
      this.segments.delete(e.segment)
      // No fsync: if the unlink is lost in a crash, the readings are sent again and
      // answered as duplicates.
      fs.rmSync(path.join(this.dir, e.segment), { force: true })
    }
  }

  private writeDurably(files: [string, unknown][]) {
    for (const [name, data] of files) {
      const tmp = path.join(this.dir, `${name}.tmp`)
      const fd = fs.openSync(tmp, 'w', 0o600)
      try {
        fs.writeSync(fd, JSON.stringify(data))
        fs.fsyncSync(fd)
      } finally { fs.closeSync(fd) }
    }
    for (const [name] of files) fs.renameSync(path.join(this.dir, `${name}.tmp`), path.join(this.dir, name))
    const dfd = fs.openSync(this.dir, 'r')
    try { fs.fsyncSync(dfd) } finally { fs.closeSync(dfd) }
  }

  private readJson<T>(name: string): T | undefined {
    const f = path.join(this.dir, name)
    if (!fs.existsSync(f)) return undefined
    try {
      return JSON.parse(fs.readFileSync(f, 'utf8')) as T
    } catch (e) {
      // Renamed only after an fsync, so a torn file means the disk lied: keep it for a person.
      fs.renameSync(f, `${f}.corrupt-${Date.now()}`)
      throw new Error(`outbox: ${f} is corrupt (${(e as Error).message}); moved aside, look at it before restarting`)
    }
  }
}
