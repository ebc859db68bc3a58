// The client's durable outbox: an append-only log of readings in segment files
// (log-<id>.ndjson), one line per reading, the exact bytes that are signed and sent.
//
// - A reading exists once it is on disk: every append (the readings of one interval)
//   is one write and one fsync of the active segment (and of the directory when a
//   segment is new) before any of its readings may be sent.
// - A segment rotates by size, so a backlog costs about the readings' own bytes and
//   a few files, not one file per interval. Each segment begins with a header line
//   holding every device's last sequence number at its creation; the newest segment
//   is never deleted, so those numbers survive every reclaim and a seq is never reused.
// - Acknowledged readings are reclaimed by segment: a sealed segment goes when all its
//   readings are acknowledged (or refused for good and kept in rejected.jsonl).
//   cursor.json remembers how far each segment is acknowledged, so that a restart
//   does not send them again; it is a hint (written without fsync): if it is lost,
//   readings are sent again and the server answers them as duplicates.
// - A crash can tear only the last append, which was never fsynced and so never sent:
//   recovery cuts it off. A bad line anywhere else means the disk lied: the segment is
//   moved aside for a person and the client stops with an error saying so.
// - A cap (maxBytes): when the outbox is full, or the disk is, new readings are refused
//   (counted), never the ones already taken; taking resumes once space returns.
// - The sender takes fresh readings first (the live queue), then the backlog, read
//   from disk segment by segment, so a long backlog neither fills memory nor delays
//   the present.
import fs from 'node:fs'
import path from 'node:path'

export interface Entry {
  device: string
  seq: number
  body: string
  segment: number
  index: number
}
export interface NewReading {
  device: string
  seq: number
  body: string
}

export interface OutboxOptions {
  /** The cap on the outbox's files, in bytes; 0: none. */
  maxBytes?: number
  /** Rotate the active segment past this size (default: a sixteenth of the cap, 64 KiB to 1 MiB). */
  segmentBytes?: number
  /** Fresh readings kept in memory for the sender; past this, the oldest wait on disk. */
  liveMax?: number
}

const SEGMENT = /^log-(\d{12})\.ndjson$/
const HEADER = '{"outbox":1,'
// Bodies are written by encodeReading (fixed field order), so the device and seq are
// read without parsing the whole line; a line that does not look so is not a reading.
const RECORD = /^\{"device":"([a-z0-9][a-z0-9-]{0,62})","seq":(\d{1,16}),"time":"([0-9T:.Z-]{20,32})",.*\}$/
const UNSENT = 0,
  TAKEN = 1,
  DONE = 2
/**
 * One time kept per this many readings, the earliest among them: the oldest pending age
 * is never understated, and costs no memory per reading.
 */
const TIME_STRIDE = 64

class Segment {
  state = new Uint8Array(1024)
  count = 0
  open = 0
  /** Readings 0..done-1 are all acknowledged or refused. */
  done = 0
  /** times[k]: the earliest time of readings k*TIME_STRIDE to (k+1)*TIME_STRIDE-1. */
  times: number[] = []
  /** The lines, for the active segment (and the one the backlog is read from). */
  lines: string[] | undefined
  constructor(
    readonly id: number,
    readonly file: string,
    public bytes: number,
  ) {}

  add(time: number) {
    if (this.count === this.state.length) {
      const grown = new Uint8Array(this.state.length * 2)
      grown.set(this.state)
      this.state = grown
    }
    const k = Math.floor(this.count / TIME_STRIDE)
    this.times[k] = Math.min(this.times[k] ?? time, time)
    this.count++
    this.open++
  }
}

export class OutboxFullError extends Error {
  override name = 'OutboxFullError'
}

const nameOf = (id: number) => `log-${String(id).padStart(12, '0')}.ndjson`

export class Outbox {
  private segs: Segment[] = []
  private byId = new Map<number, Segment>()
  private lastSeq = new Map<string, number>()
  private live: Entry[] = []
  /** No UNSENT reading before this position (segment id, index). */
  private scanSeg = 0
  private scanIdx = 0
  private fd: number | undefined
  private openTotal = 0
  private cursorDirty = false
  readonly maxBytes: number
  readonly segmentBytes: number
  readonly liveMax: number
  rejectedCount = 0
  ackedCount = 0
  /** Readings not taken because the outbox (or the disk) was full, since start. */
  refusedFull = 0
  /** Why the last append was refused, while the outbox is full; undefined once one succeeds. */
  full: string | undefined
  /** How long open() took, in milliseconds. */
  recoveryMs = 0

  constructor(
    readonly dir: string,
    opts: OutboxOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? 0
    this.segmentBytes =
      opts.segmentBytes ??
      (this.maxBytes ? Math.min(1 << 20, Math.max(64 << 10, Math.floor(this.maxBytes / 16))) : 1 << 20)
    this.liveMax = opts.liveMax ?? 4096
  }

  /** Recover what is on disk; returns the number of readings still to send. */
  open(): number {
    const t0 = process.hrtime.bigint()
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    for (const f of fs.readdirSync(this.dir)) if (f.endsWith('.tmp')) fs.rmSync(path.join(this.dir, f)) // never renamed: never sent
    const ids = fs
      .readdirSync(this.dir)
      .flatMap((f) => {
        const m = SEGMENT.exec(f)
        return m ? [Number(m[1])] : []
      })
      .sort((a, b) => a - b)
    ids.forEach((id, i) => this.recover(id, i === ids.length - 1))
    const cursor = this.readCursor()
    for (const s of this.segs) {
      const done = Math.min(cursor[s.id] ?? 0, s.count)
      for (let i = 0; i < done; i++) s.state[i] = DONE
      s.open -= done
      s.done = done
    }
    this.openTotal = this.segs.reduce((n, s) => n + s.open, 0)
    this.scanSeg = this.segs[0]?.id ?? 0
    this.scanIdx = 0
    const rejected = path.join(this.dir, 'rejected.jsonl')
    if (fs.existsSync(rejected))
      this.rejectedCount = fs.readFileSync(rejected, 'utf8').split('\n').filter(Boolean).length
    this.migrateV0()
    this.reclaim()
    this.recoveryMs = Number(process.hrtime.bigint() - t0) / 1e6
    return this.openTotal
  }

  last(device: string) {
    return this.lastSeq.get(device) ?? 0
  }
  devices() {
    return Object.fromEntries(this.lastSeq)
  }
  pending() {
    return this.openTotal
  }
  generated() {
    let n = 0
    for (const s of this.lastSeq.values()) n += s
    return n
  }
  bytes() {
    return this.segs.reduce((n, s) => n + s.bytes, 0)
  }
  files() {
    return this.segs.length
  }

  /** When the oldest reading not yet acknowledged was taken (ms since the epoch); never later than the truth. */
  oldestPending(): number | undefined {
    // Readings are written in the order they were taken, except a backlog filled in
    // (lab-outbox-fill) or a clock that jumped: so the earliest time from each segment's
    // first pending reading on, not that reading's own.
    let oldest: number | undefined
    for (const s of this.segs) {
      if (s.open === 0) continue
      let i = s.done
      while (i < s.count && s.state[i] === DONE) i++
      for (let k = Math.floor(i / TIME_STRIDE); k < s.times.length; k++)
        if (oldest === undefined || s.times[k] < oldest) oldest = s.times[k]
    }
    return oldest
  }

  /**
   * Make the readings of one interval durable: one write and one fsync. Only what this
   * returns may be sent. When the outbox or the disk is full, nothing is written, the
   * readings are counted as refused, and OutboxFullError says why.
   */
  append(readings: NewReading[]): Entry[] {
    if (readings.length === 0) return []
    const next = new Map<string, number>()
    const times: number[] = []
    for (const r of readings) {
      const prev = next.get(r.device) ?? this.last(r.device)
      if (r.seq !== prev + 1) throw new Error(`outbox: ${r.device} seq ${r.seq} is not the next one (${prev + 1})`)
      const m = RECORD.exec(r.body)
      if (!m) throw new Error(`outbox: ${r.device} seq ${r.seq}: the body is not an encoded reading`)
      times.push(Date.parse(m[3]))
      next.set(r.device, r.seq)
    }
    const text = readings.map((r) => r.body + '\n').join('')
    const size = Buffer.byteLength(text)
    let active = this.segs[this.segs.length - 1]
    const over = (extra: number) => this.maxBytes > 0 && this.bytes() + extra > this.maxBytes
    // A new segment when the active one is full, or when it is all acknowledged and
    // its space is what the cap needs back.
    const rotate =
      !active || (active.count > 0 && (active.bytes + size > this.segmentBytes || (active.open === 0 && over(size))))
    const id = rotate ? (active?.id ?? 0) + 1 : active.id
    const header = rotate ? JSON.stringify({ outbox: 1, last: this.devices() }) + '\n' : ''
    const freed = rotate && active && active.open === 0 ? active.bytes : 0
    if (over(size + Buffer.byteLength(header) - freed)) {
      return this.refuse(
        readings.length,
        `the outbox is full (${this.bytes()} of ${this.maxBytes} bytes; telemetry.outbox_max_mb)`,
      )
    }
    let fd = this.fd
    let created = false
    let before = active?.bytes ?? 0
    try {
      if (rotate) {
        // O_APPEND: after a failed write is cut back (ftruncate), the next write lands at
        // the new end, not past it with a hole of zeros that recovery would cut with it.
        fd = fs.openSync(path.join(this.dir, nameOf(id)), 'ax', 0o600)
        created = true
        before = 0
      }
      if (fd === undefined) throw new Error('outbox: not open')
      const data = Buffer.from(header + text)
      for (let off = 0; off < data.length;) off += fs.writeSync(fd, data, off, data.length - off)
      fs.fsyncSync(fd)
      if (created) this.fsyncDir()
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      // Undo what part of the write reached the file: the log stays whole.
      if (created) {
        try {
          if (fd !== undefined) fs.closeSync(fd)
        } catch {
          /* closing a failed file */
        }
        fs.rmSync(path.join(this.dir, nameOf(id)), { force: true })
      } else if (fd !== undefined) {
        try {
          fs.ftruncateSync(fd, before)
        } catch {
          /* the next recovery cuts it */
        }
      }
      if (code === 'ENOSPC' || code === 'EDQUOT')
        return this.refuse(readings.length, `the disk is full (${code} writing ${this.dir})`)
      throw e
    }
    if (rotate) {
      if (this.fd !== undefined) fs.closeSync(this.fd)
      this.fd = fd
      if (active) active.lines = undefined
      active = this.add(new Segment(id, nameOf(id), Buffer.byteLength(header)))
      active.lines = []
    }
    active.bytes += size
    this.full = undefined
    const entries = readings.map((r, j) => {
      active.add(times[j])
      active.lines!.push(r.body)
      return { device: r.device, seq: r.seq, body: r.body, segment: id, index: active.count - 1 }
    })
    for (const e of entries) active.state[e.index] = TAKEN
    this.openTotal += entries.length
    for (const [d, s] of next) this.lastSeq.set(d, s)
    this.live.push(...entries)
    // Past the live queue's bound, the oldest fresh readings wait on disk with the backlog.
    while (this.live.length > this.liveMax) this.untake(this.live.shift()!)
    if (rotate) this.reclaim()
    return entries
  }

  /** Up to max readings to send: fresh ones first, then the backlog from the oldest. */
  take(max: number): Entry[] {
    const out = this.live.splice(0, max)
    while (out.length < max) {
      const s = this.segs.find((x) => x.id >= this.scanSeg)
      if (!s) break
      if (s.id !== this.scanSeg) {
        this.scanSeg = s.id
        this.scanIdx = 0
      }
      let i = Math.max(this.scanIdx, s.done)
      if (s.open > 0) {
        let lines: string[] | undefined
        for (; i < s.count && out.length < max; i++) {
          if (s.state[i] !== UNSENT) continue
          lines ??= this.linesOf(s)
          const m = RECORD.exec(lines[i])!
          s.state[i] = TAKEN
          out.push({ device: m[1], seq: Number(m[2]), body: lines[i], segment: s.id, index: i })
        }
      } else i = s.count
      if (i < s.count) {
        this.scanIdx = i
        break
      }
      const nextSeg = this.segs[this.segs.indexOf(s) + 1]
      if (!nextSeg) {
        this.scanIdx = i
        break
      }
      this.scanSeg = nextSeg.id
      this.scanIdx = 0
    }
    return out
  }

  /** Readings that could not be delivered now: they wait in the backlog. */
  retry(entries: Entry[]) {
    for (const e of entries) this.untake(e)
  }

  /** The server has the reading: once a sealed segment has no reading left, it goes. */
  ack(e: Entry) {
    if (this.close(e)) this.ackedCount++
  }

  /** The server refused the reading for good (malformed): kept aside for a person, not retried. */
  reject(e: Entry, status: number, reason: string) {
    if (this.byId.get(e.segment)?.state[e.index] !== TAKEN) return
    const fd = fs.openSync(path.join(this.dir, 'rejected.jsonl'), 'a', 0o600)
    try {
      fs.writeSync(fd, JSON.stringify({ device: e.device, seq: e.seq, status, reason, body: e.body }) + '\n')
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    this.rejectedCount++
    this.close(e)
  }

  /** Write cursor.json if acknowledgements moved (the client calls it every second or so, and on exit). */
  flush() {
    if (!this.cursorDirty) return
    this.cursorDirty = false
    const cursor = Object.fromEntries(this.segs.filter((s) => s.done > 0).map((s) => [s.id, s.done]))
    const f = path.join(this.dir, 'cursor.json')
    fs.writeFileSync(`${f}.tmp`, JSON.stringify(cursor), { mode: 0o600 })
    fs.renameSync(`${f}.tmp`, f)
  }

  /** On exit: the cursor written, the file closed. */
  shutdown() {
    this.flush()
    if (this.fd !== undefined) fs.closeSync(this.fd)
    this.fd = undefined
  }

  private refuse(n: number, why: string): never {
    this.refusedFull += n
    this.full = why
    throw new OutboxFullError(why)
  }

  private untake(e: Entry) {
    const s = this.byId.get(e.segment)
    if (!s || s.state[e.index] !== TAKEN) return
    s.state[e.index] = UNSENT
    if (e.segment < this.scanSeg || (e.segment === this.scanSeg && e.index < this.scanIdx)) {
      this.scanSeg = e.segment
      this.scanIdx = e.index
    }
  }

  /** The reading is done with; false if it already was. */
  private close(e: Entry): boolean {
    const s = this.byId.get(e.segment)
    if (!s || s.state[e.index] === DONE) return false
    s.state[e.index] = DONE
    s.open--
    this.openTotal--
    while (s.done < s.count && s.state[s.done] === DONE) s.done++
    this.cursorDirty = true
    if (s.open === 0 && s !== this.segs[this.segs.length - 1]) this.reclaim()
    return true
  }

  /** Delete the sealed segments whose readings are all done (never the newest: its header holds the last seqs). */
  private reclaim() {
    const active = this.segs[this.segs.length - 1]
    for (const s of this.segs.filter((x) => x.open === 0 && x !== active)) {
      // No fsync: if the unlink is lost in a crash, the readings are sent again and
      // answered as duplicates.
      fs.rmSync(path.join(this.dir, s.file), { force: true })
      this.byId.delete(s.id)
      this.segs.splice(this.segs.indexOf(s), 1)
      this.cursorDirty = true
    }
  }

  private add(s: Segment) {
    this.segs.push(s)
    this.byId.set(s.id, s)
    return s
  }

  private linesOf(s: Segment): string[] {
    if (s.lines) return s.lines
    // Only the active segment and one sealed one hold their lines in memory.
    const active = this.segs[this.segs.length - 1]
    for (const x of this.segs) if (x !== active) x.lines = undefined
    s.lines = fs
      .readFileSync(path.join(this.dir, s.file), 'utf8')
      .split('\n')
      .slice(1, s.count + 1)
    return s.lines
  }

  /** Read one segment back: its header, every reading in it; cut a torn last append. */
  private recover(id: number, newest: boolean) {
    const file = nameOf(id)
    const full = path.join(this.dir, file)
    const text = fs.readFileSync(full, 'utf8')
    const lines = text.split('\n')
    let offset = 0
    const corrupt = (why: string): never => {
      const aside = `${full}.corrupt-${Date.now()}`
      fs.renameSync(full, aside)
      throw new Error(
        `outbox: ${full} is corrupt (${why}); moved aside to ${path.basename(aside)}, look at it before restarting`,
      )
    }
    const cut = () => {
      // The tail was never fsynced whole, so none of it was sent.
      fs.truncateSync(full, offset)
    }
    let header: { outbox: number; last: Record<string, number> } | undefined
    try {
      header = lines[0].startsWith(HEADER) && text.includes('\n') ? (JSON.parse(lines[0]) as typeof header) : undefined
    } catch {
      header = undefined
    }
    if (!header || typeof header.last !== 'object') {
      if (newest) {
        fs.rmSync(full)
        return
      } // created, its first write torn: nothing in it was sent
      corrupt('no header line')
    }
    for (const [d, s] of Object.entries(header!.last)) if (s > this.last(d)) this.lastSeq.set(d, s)
    offset = Buffer.byteLength(lines[0]) + 1
    const s = new Segment(id, file, 0)
    const kept: string[] = []
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]
      const last = i === lines.length - 1
      if (last && line === '') break // the file ends with a newline: whole
      const m = RECORD.exec(line)
      if (!m || last) {
        // A bad or unterminated line: torn if nothing good follows in the newest segment.
        if (newest && lines.slice(i + 1).every((l) => !RECORD.test(l))) {
          cut()
          break
        }
        corrupt(`line ${i + 1} is not a reading`)
      }
      const seq = Number(m![2])
      if (seq > this.last(m![1])) this.lastSeq.set(m![1], seq)
      s.add(Date.parse(m![3]))
      kept.push(line)
      offset += Buffer.byteLength(line) + 1
    }
    s.bytes = offset
    if (newest) {
      s.lines = kept
      this.fd = fs.openSync(full, 'a', 0o600)
    }
    this.add(s)
  }

  private readCursor(): Record<number, number> {
    try {
      const c = JSON.parse(fs.readFileSync(path.join(this.dir, 'cursor.json'), 'utf8')) as Record<string, number>
      return Object.fromEntries(
        Object.entries(c)
          .filter(([, v]) => Number.isSafeInteger(v) && v > 0)
          .map(([k, v]) => [Number(k), v]),
      )
    } catch {
      return {} // no cursor, or a torn one: every reading on disk is sent again (duplicates)
    }
  }

  /**
   * The outbox of earlier versions (seg-*.json, one file per interval, and state.json):
   * its readings and last seqs move into the log once, durably, then its files go.
   */
  private migrateV0() {
    const old = fs
      .readdirSync(this.dir)
      .filter((f) => /^seg-\d+\.json$/.test(f))
      .sort()
    const state = path.join(this.dir, 'state.json')
    if (old.length === 0 && !fs.existsSync(state)) return
    if (fs.existsSync(state)) {
      for (const [d, s] of Object.entries(JSON.parse(fs.readFileSync(state, 'utf8')) as Record<string, number>))
        if (s > this.last(d)) this.lastSeq.set(d, s)
    }
    const readings = old.flatMap((f) => JSON.parse(fs.readFileSync(path.join(this.dir, f), 'utf8')) as NewReading[])
    for (const r of readings) if (r.seq > this.last(r.device)) this.lastSeq.set(r.device, r.seq)
    // A fresh segment whose header carries the last seqs, then the old readings as its lines.
    const id = (this.segs[this.segs.length - 1]?.id ?? 0) + 1
    const header = JSON.stringify({ outbox: 1, last: this.devices() }) + '\n'
    const text = header + readings.map((r) => r.body + '\n').join('')
    const fd = fs.openSync(path.join(this.dir, nameOf(id)), 'wx', 0o600)
    try {
      fs.writeSync(fd, text)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    this.fsyncDir()
    for (const f of [...old, 'state.json']) fs.rmSync(path.join(this.dir, f), { force: true })
    if (this.fd !== undefined) fs.closeSync(this.fd)
    this.segs.forEach((s) => {
      s.lines = undefined
    })
    this.recover(id, true)
    this.openTotal = this.segs.reduce((n, s) => n + s.open, 0)
    this.scanSeg = this.segs[0].id
    this.scanIdx = 0
  }

  private fsyncDir() {
    const dfd = fs.openSync(this.dir, 'r')
    try {
      fs.fsyncSync(dfd)
    } finally {
      fs.closeSync(dfd)
    }
  }
}
