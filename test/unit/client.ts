// The IoT client's guarantees without a network: the outbox keeps every reading until
// it is acknowledged, across a restart or a crash at any point, never reuses a
// sequence number; the sender retries what failed and acknowledges each reading once.
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { takeReading } from '../../services/client/device.js'
import { Outbox, type Entry } from '../../services/client/outbox.js'
import { Sender } from '../../services/client/sender.js'
import { parseReading, verify } from '../../services/lib/reading.js'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'outbox-'))
const batch = (o: Outbox, devices: string[]) => o.append(devices.map((d) => takeReading(d, o.last(d) + 1)))

t.test('readings survive a restart until acknowledged; sequence numbers go on', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  t.same(a.open(), [])
  const first = batch(a, ['d1', 'd2'])
  batch(a, ['d1', 'd2'])
  a.ack(first[0]); a.ack(first[1])
  t.equal(a.pending(), 2)
  t.equal(fs.readdirSync(dir).filter((f) => f.startsWith('seg-')).length, 1, 'the fully acknowledged segment is gone')

  const b = new Outbox(dir) // a restart
  const recovered = b.open()
  t.same(recovered.map((e) => `${e.device}:${e.seq}`), ['d1:2', 'd2:2'], 'exactly the unacknowledged readings come back')
  t.same(recovered.map((e) => e.body), [first[0], first[1]].map((_, i) => recovered[i].body))
  t.ok(recovered.every((e) => parseReading(e.body).ok), 'byte for byte what was signed')
  t.same([b.last('d1'), b.last('d2'), b.generated()], [2, 2, 4])
  t.same(batch(b, ['d1']).map((e) => e.seq), [3], 'the next seq is never one already used')
})

t.test('a crash between the segment and the state file: the segment wins', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  a.open()
  batch(a, ['d1'])
  batch(a, ['d1'])
  fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ d1: 1 })) // as if the state write was lost
  fs.writeFileSync(path.join(dir, 'seg-000000000099.json.tmp'), '[{"device":"d1","seq":3,"bo') // torn, never renamed
  const b = new Outbox(dir)
  const recovered = b.open()
  t.equal(b.last('d1'), 2, 'seq 2 is taken: it is in a segment')
  t.same(recovered.map((e) => e.seq), [1, 2])
  t.notOk(fs.existsSync(path.join(dir, 'seg-000000000099.json.tmp')), 'the never-renamed file is removed (it was never sent)')
})

t.test('a corrupt segment stops the client with a clear error and is kept for a person', async (t) => {
  const dir = tmp()
  fs.writeFileSync(path.join(dir, 'seg-000000000001.json'), '{not json')
  t.throws(() => new Outbox(dir).open(), /seg-000000000001\.json is corrupt .*moved aside/)
  t.ok(fs.readdirSync(dir).some((f) => f.startsWith('seg-000000000001.json.corrupt-')))
})

t.test('a refused reading is kept aside, counted, and not retried', async (t) => {
  const dir = tmp()
  const a = new Outbox(dir)
  a.open()
  const [e] = batch(a, ['d1'])
  a.reject(e, 400, 'field "value" is missing')
  t.equal(a.pending(), 0)
  const b = new Outbox(dir)
  t.same(b.open(), [])
  t.equal(b.rejectedCount, 1)
  t.match(fs.readFileSync(path.join(dir, 'rejected.jsonl'), 'utf8'), /"status":400.*"value\\" is missing/)
  t.throws(() => b.append([{ device: 'd1', seq: 5, body: '{}' }]), /not the next one/)
})

t.test('the sender retries through failures and acknowledges each reading once', async (t) => {
  const key = Buffer.alloc(32, 3)
  let n = 0
  const seen = new Map<string, number>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      n++
      const body = Buffer.concat(chunks)
      if (n <= 3) { res.writeHead(503); res.end('{"error":"no backend"}'); return }
      if (n <= 5) { req.socket.destroy(); return } // the path breaks mid-request
      if (!verify(key, body, req.headers['x-signature'] as string)) { res.writeHead(401); res.end('{}'); return }
      const r = JSON.parse(body.toString())
      const k = `${r.device}:${r.seq}`
      if (r.seq === 7) { res.writeHead(400); res.end('{"error":"bad"}'); return }
      seen.set(k, (seen.get(k) ?? 0) + 1)
      res.writeHead(seen.get(k) === 1 ? 201 : 200, { 'x-upstream': '10.20.0.21:8080' }); res.end('{}')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const acked: Entry[] = []
  const rejected: Entry[] = []
  const sender = new Sender({
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/readings`,
    keyOf: () => key, concurrency: 3, maxBackoffMs: 50,
    onAck: (e) => acked.push(e), onReject: (e) => rejected.push(e),
  })
  const entries = Array.from({ length: 10 }, (_, i) => ({ ...takeReading('d1', i + 1), segment: 's' }))
  sender.push(entries)
  void sender.start()
  for (let i = 0; i < 200 && acked.length + rejected.length < 10; i++) await new Promise((r) => setTimeout(r, 20))
  sender.stop()
  t.same(acked.map((e) => e.seq).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 8, 9, 10], 'every reading acknowledged once, despite 503s and broken connections')
  t.same(rejected.map((e) => e.seq), [7], 'a 400 is refused for good, not retried')
  t.ok(sender.retries >= 5, `it retried (${sender.retries} times)`)
})
