// The ingest server's HTTP contract, on a real local socket with an in-memory store:
// each kind of bad input gets its own status and a JSON error naming what is wrong,
// nothing bad is stored, a retry is a success stored once, a reused sequence number
// with other content is a conflict, and a failing database is a 503 (retry), never a 500.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import {
  digestOf,
  ingestHandler,
  type InsertResult,
  type Store,
  type StoredReading,
} from '../../services/ingest/server.js'
import {
  BATCH_TYPE,
  MAX_BATCH_BYTES,
  MAX_BATCH_READINGS,
  MAX_BODY_BYTES,
  batchLine,
  encodeReading,
  sign,
  type Reading,
} from '../../services/lib/reading.js'

class MemoryStore implements Store {
  rows = new Map<string, { r: Reading; digest: string; backend: string }>()
  down = false
  async insert(r: Reading, digest: string, backend: string): Promise<InsertResult> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    const key = `${r.device}/${r.seq}`
    const prior = this.rows.get(key)
    if (prior) return prior.digest === digest ? 'duplicate' : 'conflict'
    this.rows.set(key, { r, digest, backend })
    return 'stored'
  }
  async list(device: string, after: number, limit: number): Promise<StoredReading[]> {
    return [...this.rows.values()]
      .filter((x) => x.r.device === device && x.r.seq > after)
      .slice(0, limit)
      .map((x) => ({ ...x.r, backend: x.backend, received: new Date(0).toISOString() }))
  }
  async healthy() {
    if (this.down) throw new Error('down')
    return true
  }
}

const key = Buffer.alloc(32, 7)
const store = new MemoryStore()
const logs: string[] = []
const { handler, counters } = ingestHandler({
  store,
  keyOf: (d) => (d === 'dev-1' ? key : undefined),
  backend: 'b1',
  log: (l) => logs.push(l),
})
const server = http.createServer(handler)
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
t.teardown(() => server.close())
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
/** A counter's value (for these labels) as prom-client holds it. */
const value = async (
  c: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> },
  labels: Record<string, string> = {},
) => (await c.get()).values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0

const reading = (seq: number, value = 21.5): Reading => ({
  device: 'dev-1',
  seq,
  time: '2026-11-25T12:00:00.000Z',
  value,
})
async function post(body: string, headers: Record<string, string | undefined> = {}) {
  const h: Record<string, string> = {
    'content-type': 'application/json',
    'x-device-id': 'dev-1',
    'x-signature': sign(key, body),
  }
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) delete h[k]
    else h[k] = v
  }
  const res = await fetch(`${base}/readings`, { method: 'POST', headers: h, body })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

t.test('a signed reading is stored (201); the same again is a success (200) stored once', async (t) => {
  const body = encodeReading(reading(1))
  t.match(await post(body), { status: 201, json: { status: 'stored', device: 'dev-1', seq: 1 } })
  t.match(await post(body), { status: 200, json: { status: 'duplicate' } })
  t.equal(store.rows.size, 1)
  t.equal(store.rows.get('dev-1/1')!.backend, 'b1', 'the backend that stored it is recorded')
  t.equal(await value(counters.accepted), 1)
  t.equal(await value(counters.duplicates), 1)
})

t.test('the same seq with other content is a conflict (409), and the first reading stays', async (t) => {
  t.match(await post(encodeReading(reading(1, 99))), { status: 409, json: { field: 'seq' } })
  t.equal(store.rows.get('dev-1/1')!.r.value, 21.5)
})

t.test('bad input: its own status, a JSON error naming what is wrong, nothing stored', async (t) => {
  const good = encodeReading(reading(50))
  const signed = (body: string) => ({ 'x-signature': sign(key, body) })
  const cases: [string, string, Record<string, string | undefined>, number, RegExp, string?][] = [
    ['forged signature', good, { 'x-signature': sign(Buffer.alloc(32, 1), good) }, 401, /signature does not match/],
    ['no signature', good, { 'x-signature': undefined }, 401, /x-signature is missing/],
    ['altered body, old signature', encodeReading(reading(50, 22)), signed(good), 401, /signature does not match/],
    ['unknown device', good, { 'x-device-id': 'dev-9' }, 401, /unknown device "dev-9"/],
    ['no device header', good, { 'x-device-id': undefined }, 401, /x-device-id is missing/],
    ['malformed JSON', '{"device":', signed('{"device":'), 400, /not valid JSON/],
    [
      'missing field',
      '{"device":"dev-1","seq":51,"time":"2026-11-25T12:00:00Z"}',
      signed('{"device":"dev-1","seq":51,"time":"2026-11-25T12:00:00Z"}'),
      400,
      /"value" is missing/,
      'value',
    ],
    [
      'seq zero (sequence numbers start at 1)',
      '{"device":"dev-1","seq":0,"time":"2026-11-25T12:00:00Z","value":1}',
      signed('{"device":"dev-1","seq":0,"time":"2026-11-25T12:00:00Z","value":1}'),
      400,
      /"seq" must be an integer from 1/,
      'seq',
    ],
    [
      'seq not an integer',
      '{"device":"dev-1","seq":1.5,"time":"2026-11-25T12:00:00Z","value":1}',
      signed('{"device":"dev-1","seq":1.5,"time":"2026-11-25T12:00:00Z","value":1}'),
      400,
      /"seq"/,
      'seq',
    ],
    [
      'time not RFC 3339',
      '{"device":"dev-1","seq":52,"time":"yesterday","value":1}',
      signed('{"device":"dev-1","seq":52,"time":"yesterday","value":1}'),
      400,
      /"time"/,
      'time',
    ],
    [
      'a date that does not exist',
      '{"device":"dev-1","seq":57,"time":"2026-02-30T12:00:00Z","value":1}',
      signed('{"device":"dev-1","seq":57,"time":"2026-02-30T12:00:00Z","value":1}'),
      400,
      /"time" must be a real/,
      'time',
    ],
    [
      'value a string',
      '{"device":"dev-1","seq":53,"time":"2026-11-25T12:00:00Z","value":"hot"}',
      signed('{"device":"dev-1","seq":53,"time":"2026-11-25T12:00:00Z","value":"hot"}'),
      400,
      /"value"/,
      'value',
    ],
    [
      'extra field',
      '{"device":"dev-1","seq":54,"time":"2026-11-25T12:00:00Z","value":1,"admin":true}',
      signed('{"device":"dev-1","seq":54,"time":"2026-11-25T12:00:00Z","value":1,"admin":true}'),
      400,
      /unknown field "admin"/,
      'admin',
    ],
    ['a JSON array', '[1,2]', signed('[1,2]'), 400, /JSON object/],
    [
      'signed by one device, claiming another',
      encodeReading({ ...reading(55), device: 'dev-2' }),
      signed(encodeReading({ ...reading(55), device: 'dev-2' })),
      401,
      /names device dev-2 but was signed by dev-1/,
    ],
    ['wrong content type', good, { 'content-type': 'text/plain' }, 415, /Content-Type must be application\/json/],
    [
      'oversized body',
      JSON.stringify({ ...reading(56), pad: 'x'.repeat(MAX_BODY_BYTES) }),
      {},
      413,
      /at most 1024 bytes/,
    ],
  ]
  for (const [name, body, headers, status, error, field] of cases) {
    const r = await post(body, headers)
    t.equal(r.status, status, `${name}: ${status}`)
    t.match(r.json.error, error, `${name}: the error says why (${String(r.json.error)})`)
    if (field) t.equal(r.json.field, field, `${name}: names the field`)
  }
  t.equal(store.rows.size, 1, 'nothing was stored')
  t.equal(await value(counters.rejected, { reason: 'unauthorized' }), 6)
  t.equal(await value(counters.rejected, { reason: 'malformed' }), 9)
  t.equal(await value(counters.rejected, { reason: 'unsupported_media_type' }), 1)
  t.equal(await value(counters.rejected, { reason: 'too_large' }), 1)
  t.notOk(
    logs.some((l) => /internal error/.test(l)),
    'no internal error along the way',
  )
  t.match(await post(encodeReading(reading(2))), { status: 201 }, 'and the server still stores good readings')
})

t.test('a database outage is a 503 with Retry-After, and health says so', async (t) => {
  store.down = true
  t.teardown(() => {
    store.down = false
  })
  const res = await fetch(`${base}/readings`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-device-id': 'dev-1',
      'x-signature': sign(key, encodeReading(reading(3))),
    },
    body: encodeReading(reading(3)),
  })
  t.equal(res.status, 503)
  t.equal(res.headers.get('retry-after'), '1')
  t.equal((await fetch(`${base}/healthz`)).status, 503)
  store.down = false
  t.equal((await fetch(`${base}/healthz`)).status, 200)
})

t.test('metrics in Prometheus text format, and the read endpoint', async (t) => {
  const m = await (await fetch(`${base}/metrics`)).text()
  t.match(m, /^# TYPE ingest_readings_accepted_total counter$/m)
  t.match(m, /^ingest_readings_accepted_total 2$/m)
  t.match(m, /^ingest_readings_rejected_total\{reason="malformed"\} 9$/m)
  t.match(m, /^ingest_request_duration_seconds_count \d+$/m)
  t.match(m, /^process_resident_memory_bytes \d+$/m, "and the process's own (prom-client's defaults)")
  t.match(m, /^nodejs_eventloop_lag_seconds [\d.e-]+$/m)
  const list = (await (await fetch(`${base}/devices/dev-1/readings?after=1`)).json()) as { readings: Reading[] }
  t.same(
    list.readings.map((r) => r.seq),
    [2],
  )
  t.equal((await fetch(`${base}/devices/dev-1/readings?limit=0`)).status, 400)
  const wrongMethod = await fetch(`${base}/readings`)
  t.equal(wrongMethod.status, 405, 'GET /readings: method not allowed')
  t.equal(wrongMethod.headers.get('allow'), 'POST', 'and it says which method is')
  t.equal((await fetch(`${base}/nothing`)).status, 404)
})

t.test("the digest identifies a reading's content", async (t) => {
  t.equal(digestOf(reading(1)), digestOf(reading(1)))
  t.not(digestOf(reading(1)), digestOf(reading(1, 0)))
})

/** A batch as the client sends it: one signed reading per line. */
async function postBatch(lines: string[], type = BATCH_TYPE) {
  const res = await fetch(`${base}/readings`, {
    method: 'POST',
    headers: { 'content-type': type },
    body: lines.map((l) => l + '\n').join(''),
  })
  return {
    status: res.status,
    json: (await res.json()) as {
      results?: { line: number; status: string; code: number; error?: string; seq?: number }[]
      error?: string
    },
  }
}
const line = (r: Reading, k = key) => batchLine(encodeReading(r), sign(k, encodeReading(r)))

t.test('a batch: each line signed and answered on its own, in order, with the status it would get alone', async (t) => {
  const before = store.rows.size
  store.rows.set('dev-1/202', { r: reading(202), digest: digestOf(reading(202)), backend: 'b0' })
  const lines = [
    line(reading(201)),
    line(reading(202)), // already stored: a duplicate
    line(reading(203), Buffer.alloc(32, 1)), // another key
    '{"device":"dev-1","seq":204',
    line({ ...reading(205), device: 'dev-9' }),
    line(reading(1, 99)), // seq 1 is stored with another value
    line(reading(206)).replace(',"signature"', ',"pad":1,"signature"'),
    encodeReading(reading(207)),
    line(reading(208)),
  ]
  const a = await postBatch(lines)
  t.equal(a.status, 200)
  t.match(
    a.json.results!.map((r) => [r.line, r.status, r.code]),
    [
      [1, 'stored', 201],
      [2, 'duplicate', 200],
      [3, 'retry', 401],
      [4, 'refused', 400],
      [5, 'retry', 401],
      [6, 'refused', 409],
      [7, 'refused', 400],
      [8, 'refused', 400],
      [9, 'stored', 201],
    ],
  )
  t.match(a.json.results![2].error, /line 3: the signature does not match/)
  t.match(a.json.results![3].error, /line 4: the line is not valid JSON/)
  t.match(a.json.results![6].error, /unknown field "pad"/)
  t.match(a.json.results![7].error, /"signature" is missing/)
  t.equal(store.rows.size, before + 3, 'only the good new readings are stored')
  t.same(
    (await postBatch([line(reading(201)), line(reading(208))])).json.results!.map((r) => r.status),
    ['duplicate', 'duplicate'],
    'a batch sent again is stored once',
  )
  t.equal(await value(counters.batchRequests), 2)
})

t.test("a batch's limits: readings per batch, bytes per batch, bytes per line, never empty", async (t) => {
  const many = Array.from({ length: MAX_BATCH_READINGS + 1 }, (_, i) => line(reading(10_000 + i)))
  t.match(await postBatch(many), { status: 413, json: { error: /at most 1000 readings; this one has 1001/ } })
  const big = Array.from({ length: 700 }, () => 'x'.repeat(MAX_BATCH_BYTES / 600))
  t.match(await postBatch(big), { status: 413, json: { error: /a batch is at most 524288 bytes/ } })
  const long = line(reading(300)).replace('"signature"', `"x":"${'y'.repeat(MAX_BODY_BYTES)}","signature"`)
  t.match(
    (await postBatch([long, line(reading(301))])).json.results!.map((r) => r.code),
    [413, 201],
    'an oversized line is refused alone',
  )
  t.match(await postBatch([]), { status: 400, json: { error: /the batch is empty/ } })
})

t.test('a batch while the database is down: a 503 for the whole (nginx tries another backend)', async (t) => {
  store.down = true
  t.teardown(() => {
    store.down = false
  })
  t.match(await postBatch([line(reading(400)), line(reading(401))]), {
    status: 503,
    json: { error: /database is unavailable/ },
  })
  store.down = false
  t.match(await postBatch([line(reading(400)), line(reading(401))]), {
    status: 200,
    json: { results: [{ status: 'stored' }, { status: 'stored' }] },
  })
})

t.test(
  'a signature with the whitespace HTTP allows around a value is the same signature; anything else is not',
  async (t) => {
    const { verify } = await import('../../services/lib/reading.js')
    const body = Buffer.from(encodeReading(reading(70)))
    const sig = sign(key, body.toString())
    t.ok(verify(key, body, sig), 'control: the signature as made')
    t.ok(verify(key, body, ` ${sig}\t`), "with optional whitespace around it (RFC 9110 OWS; a batch line's field too)")
    t.notOk(verify(key, body, `${sig}0`), 'one character more: refused')
    t.notOk(
      verify(
        key,
        body,
        sig.replace(/.$/, (c) => (c === '0' ? '1' : '0')),
      ),
      'one character changed: refused',
    )
    t.notOk(verify(key, body, undefined), 'none: refused')
  },
)
