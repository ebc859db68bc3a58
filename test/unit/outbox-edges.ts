// The outbox at its edges: a segment rotates one byte past its size and not before; the
// cap refuses the append that would pass it, counting the new segment's header and what
// rotating frees; a disk that fills mid-write leaves the log whole (a new segment
// removed, the active one cut back) and says so, another write error is not swallowed;
// an acknowledgement counts once; a cursor's nonsense is ignored (those readings are
// sent again); the old format's files are migrated by their exact names, last seqs the
// highest of state.json and the readings. test/unit/client.ts has the main paths.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { takeReading } from '../../services/client/device.js'
import { Outbox, OutboxFullError, type Entry } from '../../services/client/outbox.js'
import { encodeReading } from '../../services/lib/reading.js'

const scratch = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'outbox-edges-'))
t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }))
const tmp = () => fs.mkdtempSync(path.join(scratch, 'o-'))
const logs = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('log-'))
    .sort()
/** The device's next reading, of a fixed size (the same value and time each time). */
const next = (o: Outbox, d = 'd1', ahead = 0) => {
  const seq = o.last(d) + 1 + ahead
  return { device: d, seq, body: encodeReading({ device: d, seq, time: '2026-12-02T00:00:00.000Z', value: 20 }) }
}
/** Two readings of one device in one append. */
const two = (o: Outbox) => [next(o), next(o, 'd1', 1)]
const lineBytes = (o: Outbox) => Buffer.byteLength(next(o).body) + 1

t.test('a segment takes appends up to exactly its size; one byte more starts the next', async (t) => {
  const dir = tmp()
  const probe = new Outbox(tmp(), { segmentBytes: 1 << 20 })
  probe.open()
  probe.append([next(probe)])
  const first = probe.bytes() // the header and one line
  const line = lineBytes(probe)
  // Room for exactly two more lines after the first append.
  const o = new Outbox(dir, { segmentBytes: first + 2 * line })
  o.open()
  o.append([next(o)])
  o.append([next(o)])
  o.append([next(o)])
  t.equal(o.bytes(), first + 2 * line, 'three lines: the segment exactly full')
  t.equal(logs(dir).length, 1, 'still one segment')
  o.append([next(o)])
  t.equal(logs(dir).length, 2, 'the fourth line starts a second segment')
  t.equal(o.files(), 2)
  o.shutdown()
})

t.test(
  'the cap: an append that fits exactly is taken; one byte over is refused, the header of a new segment counted',
  async (t) => {
    const probe = new Outbox(tmp())
    probe.open()
    probe.append([next(probe)])
    const first = probe.bytes()
    const line = lineBytes(probe)
    const dir = tmp()
    const o = new Outbox(dir, { maxBytes: first + line, segmentBytes: 1 << 20 })
    o.open()
    o.append([next(o)])
    o.append([next(o)])
    t.equal(o.bytes(), first + line, 'exactly at the cap')
    t.throws(() => o.append([next(o)]), OutboxFullError, 'one line more: refused')
    t.equal(o.refusedFull, 1)
    t.match(
      o.full,
      new RegExp(`^the outbox is full \\(${first + line} of ${first + line} bytes; telemetry.outbox_max_mb\\)$`),
    )
    t.equal(o.pending(), 2, 'nothing old dropped')
    o.shutdown()
  },
)

t.test(
  'a full outbox whose readings are all acknowledged rotates to make room, its space counted as freed',
  async (t) => {
    const probe = new Outbox(tmp())
    probe.open()
    probe.append([next(probe)])
    const first = probe.bytes()
    const dir = tmp()
    // Room for one segment of one line, and a little: a second segment fits only if the first goes.
    const o = new Outbox(dir, { maxBytes: first + 10, segmentBytes: 1 << 20 })
    o.open()
    const [e] = o.append([next(o)])
    t.throws(() => o.append([next(o)]), OutboxFullError, 'pending: no room')
    o.take(10)
    o.ack(e)
    t.equal(o.pending(), 0)
    o.append([next(o)])
    t.equal(logs(dir).length, 1, 'the acknowledged segment gave its place to a new one')
    t.equal(o.pending(), 1)
    t.ok(o.bytes() <= first + 10, `within the cap (${o.bytes()} bytes)`)
    o.shutdown()
  },
)

/**
 * Make fs.writeSync fail with this code from the next call on, until restored or the
 * test ends; `firstBytes`: the first call gets that many bytes through before the disk fills.
 */
function failWrites(t: Test, code: string, firstBytes?: number) {
  const writeSync = fs.writeSync
  let calls = 0
  fs.writeSync = ((fd: number, data: Buffer, off: number) => {
    if (firstBytes !== undefined && calls++ === 0) return writeSync(fd, data, off, firstBytes)
    throw Object.assign(new Error(`${code}: write failed`), { code })
  }) as unknown as typeof fs.writeSync
  t.teardown(() => {
    fs.writeSync = writeSync
  })
  return () => {
    fs.writeSync = writeSync
  }
}

t.test(
  'a disk that fills: the append is refused and says so; the active segment is cut back to what it held',
  async (t) => {
    const dir = tmp()
    const o = new Outbox(dir)
    o.open()
    o.append([next(o)])
    const size = fs.statSync(path.join(dir, logs(dir)[0])).size
    const restore = failWrites(t, 'ENOSPC')
    t.throws(() => o.append([next(o)]), OutboxFullError)
    restore()
    t.equal(o.full, `the disk is full (ENOSPC writing ${dir})`)
    t.equal(fs.statSync(path.join(dir, logs(dir)[0])).size, size, 'the segment as it was')
    t.equal(o.last('d1'), 1, "the refused reading's seq is not used")
    o.append([next(o)])
    t.equal(o.pending(), 2, 'the next append goes on after it')
    o.shutdown()
    const again = new Outbox(dir)
    t.equal(again.open(), 2, 'and the log reads back whole')
    again.shutdown()
  },
)

t.test('a quota reached while a new segment is made: the new file is removed', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir)
  o.open()
  const restore = failWrites(t, 'EDQUOT')
  t.throws(() => o.append([next(o)]), OutboxFullError)
  restore()
  t.equal(o.full, `the disk is full (EDQUOT writing ${dir})`)
  t.same(logs(dir), [], 'no half-made segment left')
  o.append([next(o)])
  t.same(logs(dir).length, 1)
  o.shutdown()
})

t.test('another write error is thrown as it is (the client stops and says why), the log still whole', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir)
  o.open()
  o.append([next(o)])
  const restore = failWrites(t, 'EIO')
  t.throws(() => o.append([next(o)]), { code: 'EIO' })
  restore()
  t.equal(o.full, undefined, 'not reported as full')
  t.equal(o.refusedFull, 0)
  o.shutdown()
  const again = new Outbox(dir)
  t.equal(again.open(), 1)
  again.shutdown()
})

t.test('an acknowledgement counts once; a reading acknowledged twice is still one', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir)
  o.open()
  const [a, b] = o.append(two(o))
  o.take(2)
  o.ack(a)
  o.ack(a)
  t.equal(o.pending(), 1, 'one left')
  t.equal(o.ackedCount, 1)
  o.reject(b, 400, 'bad')
  o.ack(b)
  t.equal(o.pending(), 0)
  t.equal(o.ackedCount, 1, 'a refused reading acknowledged afterwards counts nowhere')
  o.shutdown()
})

t.test('sealed segments go once all their readings are done; the newest stays for its header', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir, { segmentBytes: 1 })
  o.open()
  const es: Entry[] = []
  for (let i = 0; i < 3; i++) es.push(...o.append([next(o)]))
  t.equal(logs(dir).length, 3, 'one segment per append at this size')
  o.take(3)
  o.ack(es[1])
  t.equal(logs(dir).length, 2, 'the middle one done: gone')
  o.ack(es[2])
  t.equal(logs(dir).length, 2, 'the newest done: kept')
  o.ack(es[0])
  t.equal(logs(dir).length, 1, 'the first done: gone; only the newest left')
  o.shutdown()
  const again = new Outbox(dir, { segmentBytes: 1 })
  t.equal(again.open(), 0)
  t.equal(again.last('d1'), 3, 'its header keeps the last seq')
  again.shutdown()
})

t.test('a cursor with values that are no counts is ignored for them: those readings are sent again', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir, { segmentBytes: 1 })
  o.open()
  for (let i = 0; i < 4; i++) o.append(two(o))
  o.shutdown()
  const ids = logs(dir).map((f) => Number(/\d+/.exec(f)![0]))
  fs.writeFileSync(
    path.join(dir, 'cursor.json'),
    JSON.stringify({ [ids[0]]: 1, [ids[1]]: -1, [ids[2]]: 1.5, [ids[3]]: 'all' }),
  )
  const again = new Outbox(dir, { segmentBytes: 1 })
  t.equal(again.open(), 7, "only the first segment's first reading counts as done")
  again.shutdown()
  fs.writeFileSync(path.join(dir, 'cursor.json'), JSON.stringify({ [ids[0]]: 0 }))
  const zero = new Outbox(dir, { segmentBytes: 1 })
  t.equal(zero.open(), 8, 'zero done: all sent again')
  zero.shutdown()
})

t.test(
  'the old format: only seg-N.json and state.json are migrated; the last seq is the highest either knows',
  async (t) => {
    const dir = tmp()
    fs.mkdirSync(dir, { recursive: true })
    const r = (seq: number) => {
      const x = takeReading('d1', seq)
      return { device: x.device, seq: x.seq, body: x.body }
    }
    fs.writeFileSync(path.join(dir, 'seg-000000000001.json'), JSON.stringify([r(4), r(5)]))
    fs.writeFileSync(path.join(dir, 'seg-000000000002.json.bak'), JSON.stringify([r(9)]))
    fs.writeFileSync(path.join(dir, 'xseg-000000000003.json'), JSON.stringify([r(8)]))
    fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ d1: 3, d2: 12 }))
    const o = new Outbox(dir)
    t.equal(o.open(), 2, 'the two readings of seg-000000000001.json')
    t.same(o.devices(), { d1: 5, d2: 12 }, 'd1 from its readings (higher than state.json), d2 from state.json')
    t.ok(
      fs.existsSync(path.join(dir, 'seg-000000000002.json.bak')) &&
        fs.existsSync(path.join(dir, 'xseg-000000000003.json')),
      'files of other names left alone',
    )
    t.notOk(fs.existsSync(path.join(dir, 'state.json')))
    o.shutdown()

    const only = tmp()
    fs.writeFileSync(path.join(only, 'state.json'), JSON.stringify({ d1: 40 }))
    const s = new Outbox(only)
    t.equal(s.open(), 0)
    t.equal(s.last('d1'), 40, 'state.json alone still carries the last seqs')
    t.notOk(fs.existsSync(path.join(only, 'state.json')))
    s.shutdown()
    const back = new Outbox(only)
    back.open()
    t.equal(back.last('d1'), 40, "and they survive the next restart (in the new segment's header)")
    back.shutdown()

    const mixed = tmp()
    const m = new Outbox(mixed)
    m.open()
    m.append([takeReading('d1', 1)])
    m.shutdown()
    fs.writeFileSync(path.join(mixed, 'seg-000000000001.json'), JSON.stringify([r(2)]))
    const mm = new Outbox(mixed)
    t.equal(mm.open(), 2, 'old readings beside a new-format segment: both kept')
    t.same(logs(mixed).length, 2, 'the migration in a segment after the newest')
    t.equal(mm.last('d1'), 2)
    mm.shutdown()
  },
)

t.test('a write the disk cut short is cut back: the active segment holds what it held before', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir)
  o.open()
  o.append([next(o)])
  const file = path.join(dir, logs(dir)[0])
  const size = fs.statSync(file).size
  // The first write reaches the file in part (a few bytes), the next one finds the disk full.
  const restore = failWrites(t, 'ENOSPC', 7)
  t.throws(() => o.append([next(o)]), OutboxFullError)
  restore()
  t.equal(fs.statSync(file).size, size, 'the 7 bytes that got through are cut off again')
  o.append([next(o)])
  o.shutdown()
  const again = new Outbox(dir)
  t.equal(again.open(), 2, 'the log reads back whole, no glued line')
  again.shutdown()
})

t.test('what append refuses to write, and when', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir)
  o.open()
  t.same(o.append([]), [], 'nothing to append: nothing written')
  t.same(logs(dir), [], 'not even a segment with a header')
  t.throws(() => o.append([{ ...next(o), seq: 3 }]), { message: 'outbox: d1 seq 3 is not the next one (1)' })
  t.throws(() => o.append([{ device: 'd1', seq: 1, body: '{"device":"d1","seq":1}' }]), {
    message: 'outbox: d1 seq 1: the body is not an encoded reading',
  })
  o.append([next(o)])
  o.shutdown()
  t.throws(
    () => o.append([next(o)]),
    { message: 'outbox: not open' },
    'after shutdown: refused, not written to a closed file',
  )
})

t.test('at open: leftover .tmp files go, files that only look like segments stay and are not read', async (t) => {
  const dir = tmp()
  const o = new Outbox(dir)
  o.open()
  o.append([next(o)])
  o.shutdown()
  const seg = logs(dir)[0]
  fs.writeFileSync(path.join(dir, 'cursor.json.tmp'), '{')
  fs.copyFileSync(path.join(dir, seg), path.join(dir, `${seg}.bak`))
  fs.copyFileSync(path.join(dir, seg), path.join(dir, `x${seg}`))
  const again = new Outbox(dir)
  t.equal(again.open(), 1, 'one reading: the copies are not segments')
  t.equal(again.files(), 1)
  t.notOk(fs.existsSync(path.join(dir, 'cursor.json.tmp')), 'the never-renamed cursor is gone')
  t.ok(
    fs.existsSync(path.join(dir, `${seg}.bak`)) && fs.existsSync(path.join(dir, `x${seg}`)),
    'the look-alikes are left for a person',
  )
  again.shutdown()
})

t.test(
  'the cursor names only segments with something done, privately; a refusal is kept once, never for a reading acknowledged',
  async (t) => {
    const dir = tmp()
    const o = new Outbox(dir, { segmentBytes: 1 })
    o.open()
    const [a] = o.append([next(o)])
    const [b] = o.append([next(o)])
    o.take(2)
    o.ack(b)
    o.flush()
    const ids = logs(dir).map((f) => Number(/\d+/.exec(f)![0]))
    t.same(
      JSON.parse(fs.readFileSync(path.join(dir, 'cursor.json'), 'utf8')),
      { [ids[1]]: 1 },
      'the second segment: one done; the first, nothing done, not named',
    )
    t.equal(fs.statSync(path.join(dir, 'cursor.json')).mode & 0o777, 0o600)
    o.reject(b, 400, 'already acknowledged')
    t.notOk(fs.existsSync(path.join(dir, 'rejected.jsonl')), 'a reading already acknowledged is not refused after')
    o.reject(a, 409, 'seq reused')
    o.reject(a, 409, 'seq reused')
    t.equal(o.rejectedCount, 1)
    t.same(
      fs
        .readFileSync(path.join(dir, 'rejected.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as object),
      [{ device: 'd1', seq: 1, status: 409, reason: 'seq reused', body: a.body }],
      'one line for one refusal, with what a person needs',
    )
    t.equal(o.pending(), 0)
    o.shutdown()
  },
)
