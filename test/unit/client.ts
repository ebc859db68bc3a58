// The IoT client's guarantees without a network: the outbox keeps every reading until
// it is acknowledged, across a restart or a crash at any point, never reuses a
// sequence number, stays near the readings' own size on disk, refuses new readings
// (never old ones) when full, and hands out fresh readings before the backlog; the
// sender retries what failed, in batches or one by one, and acknowledges each once.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { takeReading } from '../../services/client/device.js'
import { Outbox, OutboxFullError, type Entry } from '../../services/client/outbox.js'
import { Sender } from '../../services/client/sender.js'
import { BATCH_TYPE, parseBatchLine, parseReading, verify } from '../../services/lib/reading.js'
import { waitFor } from '../../provision/lib/wait.js'

// On tmpfs where there is one: these tests are about the outbox's logic, and its fsyncs
// on a disk made one test take 10 s (and StrykerJS runs this file for every mutant of
// the outbox). Every directory goes at the end: they piled up in /tmp before.
const scratch = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'outbox-tests-'))
t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }))
const tmp = () => fs.mkdtempSync(path.join(scratch, 'outbox-'))
const batch = (o: Outbox, devices: string[]) => o.append(devices.map((d) => takeReading(d, o.last(d) + 1)))
const logs = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('log-'))
    .sort()
const ids = (es: Entry[]) => es.map((e) => `${e.device}:${e.seq}`)
const all = (o: Outbox) => {
  const out: Entry[] = []
  for (let x = o.take(1000); x.length; x = o.take(1000)) out.push(...x)
  return out
}

t.test('readings survive a restart until acknowledged; sequence numbers go on', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  t.equal(a.open(), 0)
  const first = batch(a, ['d1', 'd2'])
  batch(a, ['d1', 'd2'])
  const taken = a.take(10)
  t.same(ids(taken), ['d1:1', 'd2:1', 'd1:2', 'd2:2'], 'fresh readings are handed out in order')
  a.ack(first[0])
  a.ack(first[1])
  a.retry(taken.slice(2))
  t.equal(a.pending(), 2)
  a.shutdown()

  const b = new Outbox(dir) // a restart
  t.equal(b.open(), 2)
  const recovered = all(b)
  t.same(ids(recovered), ['d1:2', 'd2:2'], 'exactly the unacknowledged readings come back')
  t.ok(
    recovered.every((e) => parseReading(e.body).ok),
    'byte for byte what was signed',
  )
  t.same([b.last('d1'), b.last('d2'), b.generated()], [2, 2, 4])
  t.same(
    batch(b, ['d1']).map((e) => e.seq),
    [3],
    'the next seq is never one already used',
  )
})

t.test("a backlog costs about the readings' own bytes, in a few files", async (t) => {
  const dir = tmp()
  const a = new Outbox(dir, { segmentBytes: 64 << 10 })
  a.open()
  const devices = ['iot-client-01', 'iot-client-02', 'iot-client-03', 'iot-client-04']
  for (let i = 0; i < 2500; i++) batch(a, devices)
  const files = logs(dir)
  const bytes = files.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0)
  t.equal(a.pending(), 10_000)
  t.ok(bytes / 10_000 <= 100, `${(bytes / 10_000).toFixed(1)} bytes per reading on disk (at most 100)`)
  t.ok(files.length <= 16, `${files.length} files for 10,000 readings (segments of 64 KiB)`)
  t.equal(a.bytes(), bytes, 'the outbox knows its size')
})

t.test('acknowledged segments are reclaimed, the newest kept: seqs survive even an empty outbox', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir, { segmentBytes: 4096 })
  a.open()
  for (let i = 0; i < 200; i++) batch(a, ['d1', 'd2'])
  t.ok(logs(dir).length > 3, `rotated by size (${logs(dir).length} segments)`)
  for (const e of all(a)) a.ack(e)
  t.equal(a.pending(), 0)
  t.equal(logs(dir).length, 1, 'only the newest segment is left')
  a.shutdown()
  const b = new Outbox(dir)
  t.equal(b.open(), 0, 'nothing to send after a restart (the cursor says all is acknowledged)')
  t.same([b.last('d1'), b.last('d2')], [200, 200], 'the last seqs are still known')
  batch(b, ['d1', 'd2', 'd1'].slice(0, 2))
  t.same(b.devices(), { d1: 201, d2: 201 })
})

t.test('the cursor is a hint: without it, acknowledged readings are sent again, never lost', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  a.open()
  for (let i = 0; i < 5; i++) batch(a, ['d1'])
  for (const e of a.take(3)) a.ack(e)
  a.shutdown()
  const b = new Outbox(dir)
  t.equal(b.open(), 2, 'with the cursor: only the two unacknowledged')
  t.same(ids(all(b)), ['d1:4', 'd1:5'])
  fs.rmSync(path.join(dir, 'cursor.json'))
  const c = new Outbox(dir)
  t.equal(c.open(), 5, 'cursor lost: all five again (the server answers duplicates)')
  fs.writeFileSync(path.join(dir, 'cursor.json'), '{"1":')
  t.equal(new Outbox(dir).open(), 5, 'a torn cursor is ignored the same way')
})

t.test('a crash tears only the last append: it is cut off, and it was never sent', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  a.open()
  batch(a, ['d1'])
  batch(a, ['d1'])
  a.shutdown()
  const [seg] = logs(dir)
  fs.appendFileSync(path.join(dir, seg), '{"device":"d1","seq":3,"time":"2026-11-2') // torn: no newline
  const b = new Outbox(dir)
  t.equal(b.open(), 2)
  t.equal(b.last('d1'), 2, 'seq 3 never became durable')
  t.notMatch(fs.readFileSync(path.join(dir, seg), 'utf8'), /"seq":3/, 'the torn tail is cut from the file')
  b.shutdown()
  fs.appendFileSync(path.join(dir, seg), Buffer.alloc(300)) // a size extended, its blocks never written
  const c = new Outbox(dir)
  t.equal(c.open(), 2, 'zeros after a crash are cut the same way')
  t.same(
    batch(c, ['d1']).map((e) => e.seq),
    [3],
  )
})

t.test('a crash while a new segment is created: the half-made file goes, the old one stays', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  a.open()
  batch(a, ['d1'])
  a.shutdown()
  fs.writeFileSync(path.join(dir, 'log-000000000002.ndjson'), '{"outbox":1,"last":{"d') // header torn
  const b = new Outbox(dir)
  t.equal(b.open(), 1)
  t.same(logs(dir), ['log-000000000001.ndjson'])
  t.equal(b.last('d1'), 1)
})

t.test(
  'a bad line before good ones means the disk lied: the client stops, the file is kept for a person',
  async (t) => {
    const dir = tmp()
    const a = new Outbox(dir)
    a.open()
    batch(a, ['d1'])
    batch(a, ['d1'])
    a.shutdown()
    const f = path.join(dir, logs(dir)[0])
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace('"seq":1', '"seq":"x"'))
    t.throws(
      () => new Outbox(dir).open(),
      /log-000000000001\.ndjson is corrupt \(line 2 is not a reading\); moved aside/,
    )
    t.ok(fs.readdirSync(dir).some((x) => x.startsWith('log-000000000001.ndjson.corrupt-')))
  },
)

t.test('a refused reading is kept aside, counted, and not retried', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  a.open()
  const [e] = batch(a, ['d1'])
  a.reject(e, 400, 'field "value" is missing')
  t.equal(a.pending(), 0)
  a.shutdown()
  const b = new Outbox(dir)
  t.equal(b.open(), 0)
  t.equal(b.rejectedCount, 1)
  t.match(fs.readFileSync(path.join(dir, 'rejected.jsonl'), 'utf8'), /"status":400.*"value\\" is missing/)
  t.throws(() => b.append([{ ...takeReading('d1', 5) }]), /not the next one/)
})

t.test('fresh readings go before the backlog; the backlog is read from disk, not held in memory', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir, { segmentBytes: 2048, liveMax: 8 })
  a.open()
  for (let i = 0; i < 50; i++) batch(a, ['d1', 'd2']) // 100 readings: only 8 stay in the live queue
  const first = a.take(4)
  t.same(ids(first), ['d1:47', 'd2:47', 'd1:48', 'd2:48'], 'the freshest held in memory first')
  const rest = a.take(200)
  t.same(ids(rest).slice(4, 8), ['d1:1', 'd2:1', 'd1:2', 'd2:2'], 'then the backlog from the oldest')
  t.equal(first.length + rest.length, 100, 'every reading once')
  a.retry(rest.slice(10, 12))
  t.same(ids(a.take(10)), ids(rest.slice(10, 12)), 'what failed is taken again')
  batch(a, ['d1'])
  t.same(ids(a.take(10)), ['d1:51'], 'and a new reading is taken at once')
})

t.test(
  'full: new readings are refused and counted, none already taken is lost, taking resumes by itself',
  async (t) => {
    const dir = tmp()
    const a = new Outbox(dir, { maxBytes: 64 << 10 })
    a.open()
    t.equal(a.segmentBytes, 64 << 10, 'segments no smaller than 64 KiB')
    const b = new Outbox(tmp(), { maxBytes: 1 << 20 })
    t.equal(b.segmentBytes, 64 << 10, 'a sixteenth of the cap')
    let taken = 0
    let refusedAt = -1
    for (let i = 0; i < 20_000 && refusedAt < 0; i++) {
      try {
        batch(b, ['d1', 'd2'])
        taken += 2
      } catch (e) {
        t.type(e, OutboxFullError)
        refusedAt = i
      }
    }
    t.ok(refusedAt > 0, `full after ${taken} readings`)
    t.match(b.full, /the outbox is full \(\d+ of 1048576 bytes; telemetry.outbox_max_mb\)/)
    t.ok(b.bytes() <= 1 << 20, `never past the cap (${b.bytes()} bytes)`)
    t.throws(() => batch(b, ['d1', 'd2']), OutboxFullError)
    t.equal(b.refusedFull, 4, 'two intervals of two readings refused')
    t.equal(b.generated(), taken, 'the seqs did not move for refused readings')
    t.equal(b.pending(), taken, 'everything taken is still there')
    const entries = all(b)
    t.equal(entries.length, taken)
    for (const e of entries.slice(0, 2000)) b.ack(e)
    batch(b, ['d1', 'd2'])
    t.equal(b.full, undefined, 'space came back (acknowledged segments reclaimed): readings are taken again')
    t.same(
      [b.last('d1'), b.last('d2')],
      [taken / 2 + 1, taken / 2 + 1],
      'with the very next seqs: no gap for the refused ones',
    )
  },
)

t.test(
  'the disk full for another reason: the same policy, and the log stays whole',
  { skip: process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs (CI runs as root)' : false },
  async (t) => {
    const mnt = tmp()
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt])
    t.teardown(() => execFileSync('umount', [mnt]))
    const a = new Outbox(path.join(mnt, 'outbox'), { segmentBytes: 1 << 20 })
    a.open()
    let taken = 0
    let full: unknown
    for (let i = 0; i < 10_000 && !full; i++) {
      try {
        batch(a, ['d1', 'd2'])
        taken += 2
      } catch (e) {
        full = e
      }
    }
    t.type(full, OutboxFullError)
    t.match(a.full, /the disk is full \(ENOSPC/)
    t.equal(a.pending(), taken)
    a.shutdown()
    const b = new Outbox(path.join(mnt, 'outbox'))
    t.equal(b.open(), taken, 'after a restart every reading taken is there, none of the refused ones')
    t.equal(b.last('d1'), taken / 2)
    b.shutdown()
  },
)

t.test('the outbox of the previous version (a file per interval) moves into the log once', async (t) => {
  const dir = tmp()
  const r = (seq: number) => takeReading('d1', seq)
  fs.writeFileSync(
    path.join(dir, 'seg-000000000007.json'),
    JSON.stringify([r(6), r(7)].map(({ device, seq, body }) => ({ device, seq, body }))),
  )
  fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ d1: 7, d2: 3 }))
  const a = new Outbox(dir)
  t.equal(a.open(), 2)
  t.same(ids(all(a)), ['d1:6', 'd1:7'])
  t.same(a.devices(), { d1: 7, d2: 3 })
  t.same(
    fs.readdirSync(dir).filter((f) => f.endsWith('.json')),
    [],
    'the old files are gone',
  )
})

/** A server that answers single readings and batches, with scripted failures. */
async function server(t: Test, key: Buffer, opts: { batches: boolean }) {
  let n = 0
  const seen = new Map<string, number>()
  const requests: string[] = []
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      n++
      const body = Buffer.concat(chunks)
      requests.push(req.headers['content-type'] as string)
      if (n <= 2) {
        res.writeHead(503)
        res.end('{"error":"no backend"}')
        return
      }
      if (n <= 4) {
        req.socket.destroy()
        return
      } // the path breaks mid-request
      const one = (text: string, sig: string | undefined) => {
        if (!verify(key, Buffer.from(text), sig)) return 401
        const r = JSON.parse(text)
        if (r.seq === 7) return 400
        if (r.seq === 9 && !seen.has('retried-9')) {
          seen.set('retried-9', 1)
          return 503
        }
        const k = `${r.device}:${r.seq}`
        seen.set(k, (seen.get(k) ?? 0) + 1)
        return seen.get(k) === 1 ? 201 : 200
      }
      if (req.headers['content-type'] === BATCH_TYPE) {
        if (!opts.batches) {
          res.writeHead(415)
          res.end('{"error":"application/json only"}')
          return
        }
        const results = body
          .toString()
          .trim()
          .split('\n')
          .map((line) => {
            const p = parseBatchLine(line)
            if (!p.ok) return { status: 'refused', code: 400, error: p.error }
            const code = one(p.canonical, p.signature)
            return { status: code < 300 ? 'stored' : 'refused', code, device: p.reading.device, seq: p.reading.seq }
          })
        res.writeHead(200, { 'x-upstream': '10.20.0.21:8080' })
        res.end(JSON.stringify({ results }))
        return
      }
      const code = one(body.toString(), req.headers['x-signature'] as string)
      res.writeHead(code, { 'x-upstream': '10.20.0.21:8080' })
      res.end('{}')
    })
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => srv.close())
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/readings`, requests }
}

for (const mode of [
  { name: 'one per request', batch: 1, batches: true },
  { name: 'in batches', batch: 4, batches: true },
  { name: 'to a server that takes no batches', batch: 4, batches: false },
]) {
  t.test(`the sender, ${mode.name}, retries through failures and acknowledges each reading once`, async (t) => {
    const key = Buffer.alloc(32, 3)
    const srv = await server(t, key, mode)
    const dir = tmp()
    const outbox = new Outbox(dir)
    outbox.open()
    for (let i = 0; i < 10; i++) batch(outbox, ['d1'])
    const acked: Entry[] = []
    const rejected: Entry[] = []
    const logged: string[] = []
    const sender = new Sender({
      url: srv.url,
      keyOf: () => key,
      concurrency: 3,
      batch: mode.batch,
      maxBackoffMs: 50,
      source: outbox,
      log: (l) => logged.push(l),
      onAck: (e) => {
        acked.push(e)
        outbox.ack(e)
      },
      onReject: (e, s, r) => {
        rejected.push(e)
        outbox.reject(e, s, r)
      },
    })
    void sender.start()
    await waitFor('ten readings acknowledged or rejected', async () => acked.length + rejected.length >= 10, 6000, 20)
    sender.stop()
    t.same(
      acked.map((e) => e.seq).sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 8, 9, 10],
      'every reading acknowledged once, despite 503s and broken connections',
    )
    t.same(
      rejected.map((e) => e.seq),
      [7],
      'a 400 is refused for good, not retried',
    )
    t.equal(outbox.pending(), 0)
    t.ok(sender.retries >= 3, `it retried (${sender.retries} readings)`)
    if (mode.batch > 1 && mode.batches)
      t.ok(srv.requests.filter((x) => x === BATCH_TYPE).length < 10, `in batches (${srv.requests.length} requests)`)
    if (!mode.batches) {
      t.match(
        logged.join('\n'),
        /refused a batch \(HTTP 415\): sending one reading per request/,
        'it says it falls back',
      )
      t.equal(srv.requests.at(-1), 'application/json', 'and sends one at a time')
    }
  })
}

t.test(
  "the oldest pending reading's age: never understated, whatever order the readings were written in",
  async (t) => {
    const dir = tmp()
    const a = new Outbox(dir, { segmentBytes: 4096 })
    a.open()
    t.equal(a.oldestPending(), undefined, 'nothing pending: no age')
    const dayAgo = Date.now() - 86_400_000
    a.append([takeReading('d1', 1)]) // taken now
    a.append(Array.from({ length: 200 }, (_, i) => takeReading('d1', i + 2, new Date(dayAgo + i * 1000)))) // a backlog filled in after
    a.shutdown()
    const b = new Outbox(dir, { segmentBytes: 4096 })
    b.open()
    t.equal(b.oldestPending(), dayAgo, 'after a restart, the oldest is the day-old one written second')
    // In one segment too: a fresh reading first, a day's backlog after it (the outage test's case).
    const c = new Outbox(tmp())
    c.open()
    c.append([takeReading('d1', 1)])
    c.append(Array.from({ length: 200 }, (_, i) => takeReading('d1', i + 2, new Date(dayAgo + i * 1000))))
    t.equal(c.files(), 1, 'all in one segment')
    t.equal(c.oldestPending(), dayAgo, 'the day-old readings behind a fresh one still count')
    c.shutdown()
    t.equal(
      (() => {
        const d = new Outbox(c.dir)
        d.open()
        return d.oldestPending()
      })(),
      dayAgo,
      'and after a restart',
    )
    for (const e of all(b)) if (e.seq <= 150) b.ack(e)
    const oldest = b.oldestPending()!
    t.ok(
      oldest <= dayAgo + 149_000 && oldest >= dayAgo + 149_000 - 64_000,
      `then the oldest still pending, at most ${64} readings early (${(oldest - dayAgo) / 1000} s after the first)`,
    )
  },
)

// Recovery, edge by edge. Each of these kills one of the mutants kept in test/mutants/
// (npm run test:mutants applies them one by one): a recovery that passes everything
// above and still loses or reuses readings.

t.test("a device's last seq survives in the newest segment's header when none of its readings is left", async (t) => {
  const dir = tmp()
  const a = new Outbox(dir, { segmentBytes: 4096 })
  a.open()
  for (let i = 0; i < 50; i++) batch(a, ['d1', 'd2'])
  for (let i = 0; i < 200; i++) batch(a, ['d1']) // later segments hold d1 alone
  for (const e of all(a)) a.ack(e)
  t.equal(logs(dir).length, 1, 'every older segment reclaimed')
  t.notMatch(
    fs
      .readFileSync(path.join(dir, logs(dir)[0]), 'utf8')
      .split('\n')
      .slice(1)
      .join('\n'),
    /"d2"/,
    'the segment left holds no reading of d2',
  )
  a.shutdown()
  const b = new Outbox(dir)
  b.open()
  t.equal(b.last('d2'), 50, "d2's last seq comes back from the header")
  t.same(
    batch(b, ['d2']).map((e) => e.seq),
    [51],
    'so its next reading is 51, never a seq the server already holds (a 409, a reading lost)',
  )
})

t.test(
  'a whole last line without its newline is a torn append: cut, and the next append stays on a line of its own',
  async (t) => {
    const dir = tmp()
    const a = new Outbox(dir)
    a.open()
    batch(a, ['d1'])
    a.shutdown()
    const file = path.join(dir, logs(dir).at(-1)!)
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)
    // The record of seq 2, written whole but for its newline (the crash came before it).
    fs.appendFileSync(file, lines.at(-1)!.replace('"seq":1', '"seq":2'))
    const b = new Outbox(dir)
    t.equal(b.open(), 1, 'only the reading whose append completed is pending')
    t.equal(fs.readFileSync(file, 'utf8').endsWith('\n'), true, 'the torn tail is cut back to the last newline')
    batch(b, ['d1'])
    b.shutdown()
    const c = new Outbox(dir)
    t.equal(c.open(), 2, 'after another restart the file reads back whole: two readings, none glued to another')
    t.same(ids(all(c)), ['d1:1', 'd1:2'])
  },
)

t.test(
  'a cursor that claims more than a segment holds is clamped: nothing negative, nothing skipped later',
  async (t) => {
    const dir = tmp()
    const a = new Outbox(dir)
    a.open()
    for (let i = 0; i < 3; i++) batch(a, ['d1'])
    a.shutdown()
    const id = Number(/(\d+)/.exec(logs(dir)[0])![1])
    fs.writeFileSync(path.join(dir, 'cursor.json'), JSON.stringify({ [id]: 10 }))
    const b = new Outbox(dir)
    t.equal(b.open(), 0, 'all three acknowledged, none negative')
    t.equal(b.pending(), 0)
    batch(b, ['d1'])
    t.equal(b.pending(), 1, 'a new reading counts as one pending')
    t.same(ids(all(b)), ['d1:4'], 'and is handed out')
  },
)
