// The ingest server's contract at its edges, as a client, an operator and a dashboard
// meet it: the exact limits (a body of exactly the maximum is taken, one byte more is
// not, with or without Content-Length), the error bodies and headers a client acts on
// (Retry-After only on a 503, Connection: close after a 413), the log lines an operator
// reads, the metrics' names and help a dashboard relies on, and the read endpoint's
// query checks. test/unit/ingest.ts has the main paths; this file the boundaries.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { ingestHandler, type InsertResult, type Store, type StoredReading } from '../../services/ingest/server.js'
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
import { waitFor } from '../../provision/lib/wait.js'

/** A store whose answers a test sets: what insert says, and whether it or list fails. */
class ScriptedStore implements Store {
  rows = new Map<string, Reading>()
  answer: InsertResult | undefined
  insertFails = false
  listFails = false
  listed: [string, number, number][] = []
  async insert(r: Reading): Promise<InsertResult> {
    if (this.insertFails) throw new Error('connect ECONNREFUSED 10.30.0.20:5432')
    if (this.answer) return this.answer
    const k = `${r.device}/${r.seq}`
    if (this.rows.has(k)) return 'duplicate'
    this.rows.set(k, r)
    return 'stored'
  }
  async list(device: string, after: number, limit: number): Promise<StoredReading[]> {
    this.listed.push([device, after, limit])
    if (this.listFails) throw new Error('the pool is closed')
    return []
  }
  async healthy() {
    if (this.insertFails) throw new Error('connect ECONNREFUSED')
    return true
  }
}

const key = Buffer.alloc(32, 9)
function start(
  t: Test,
  keyOf: (d: string) => Buffer | undefined = (d) => (d === 'dev-1' ? key : undefined),
  withLog = true,
) {
  const store = new ScriptedStore()
  const logs: string[] = []
  const { handler } = ingestHandler({
    store,
    keyOf,
    backend: 'backend-7',
    ...(withLog ? { log: (l: string) => logs.push(l) } : {}),
  })
  const server = http.createServer(handler)
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => {
    agent.destroy()
    server.close()
  })
  const listening = new Promise<number>((r) =>
    server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)),
  )
  interface Reply {
    status: number
    headers: http.IncomingHttpHeaders
    text: string
    json: Record<string, unknown>
  }
  /** One request; chunks sent one write each (no Content-Length when `chunked`). */
  async function call(
    method: string,
    path: string,
    headers: Record<string, string> = {},
    chunks: string[] = [],
    chunked = false,
  ): Promise<Reply> {
    const port = await listening
    const body = chunks.join('')
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method,
          path,
          agent,
          headers: chunked || method === 'GET' ? headers : { ...headers, 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => {
            text += c
          })
          res.on('end', () => {
            let json: Record<string, unknown> = {}
            try {
              json = JSON.parse(text) as Record<string, unknown>
            } catch {
              /* /metrics is text */
            }
            resolve({ status: res.statusCode!, headers: res.headers, text, json })
          })
        },
      )
      req.on('error', reject)
      for (const c of chunks) req.write(c)
      req.end()
    })
  }
  const post = (body: string, headers: Record<string, string> = {}, chunked = false) =>
    call(
      'POST',
      '/readings',
      { 'content-type': 'application/json', 'x-device-id': 'dev-1', 'x-signature': sign(key, body), ...headers },
      chunked ? [body.slice(0, 100), body.slice(100)] : [body],
      chunked,
    )
  const batch = (lines: string[], chunked = false, newline = true) =>
    call(
      'POST',
      '/readings',
      { 'content-type': BATCH_TYPE },
      chunked ? lines.map((l) => l + '\n') : [lines.join('\n') + (newline ? '\n' : '')],
      chunked,
    )
  return { store, logs, call, post, batch, port: listening }
}

const reading = (seq: number): Reading => ({ device: 'dev-1', seq, time: '2026-11-25T12:00:00.000Z', value: 21.5 })
/** A reading's body padded with JSON whitespace to exactly `size` bytes (still valid, still signed as sent). */
const padded = (seq: number, size: number) => encodeReading(reading(seq)).padEnd(size, ' ')
/** A batch line (signed over the canonical body) padded inside with whitespace to exactly `size` bytes. */
const paddedLine = (seq: number, size: number, k = key) => {
  const l = batchLine(encodeReading(reading(seq)), sign(k, encodeReading(reading(seq))))
  return l.slice(0, -1).padEnd(size - 1, ' ') + '}'
}

t.test(
  'a reading of exactly the maximum size is taken, one byte more is a 413, with or without Content-Length',
  async (t) => {
    const { post } = start(t)
    t.equal((await post(padded(1, MAX_BODY_BYTES))).status, 201, `${MAX_BODY_BYTES} bytes: stored`)
    const over = await post(padded(2, MAX_BODY_BYTES + 1))
    t.same(
      [over.status, over.json],
      [413, { error: `a reading is at most ${MAX_BODY_BYTES} bytes; this body is ${MAX_BODY_BYTES + 1}` }],
      'declared one byte over: refused before reading it, saying how big it was',
    )
    t.equal(over.headers.connection, 'close', 'after a 413 the rest of the body is unread: the connection is closed')
    t.notOk('retry-after' in over.headers, 'a 413 is not to be retried as it is')
    t.equal(
      (await post(padded(3, MAX_BODY_BYTES), {}, true)).status,
      201,
      `${MAX_BODY_BYTES} bytes chunked (no Content-Length): stored`,
    )
    const chunked = await post(padded(4, MAX_BODY_BYTES + 1), {}, true)
    t.same(
      [chunked.status, chunked.json],
      [413, { error: `a reading is at most ${MAX_BODY_BYTES} bytes` }],
      'chunked one byte over: refused as it grows past the limit',
    )
  },
)

t.test('the content type: parameters and case do not matter; anything else is named in a 415', async (t) => {
  const { post, call } = start(t)
  t.equal(
    (await post(encodeReading(reading(1)), { 'content-type': 'Application/JSON ; charset=utf-8' })).status,
    201,
    'Application/JSON ; charset=utf-8',
  )
  const wrong = await post(encodeReading(reading(2)), { 'content-type': 'text/plain' })
  t.same(
    [wrong.status, wrong.json],
    [
      415,
      { error: `Content-Type must be application/json (one reading) or ${BATCH_TYPE} (a batch), got "text/plain"` },
    ],
  )
  const absent = await call('POST', '/readings', { 'x-device-id': 'dev-1' }, [encodeReading(reading(2))])
  t.same(
    absent.json,
    { error: `Content-Type must be application/json (one reading) or ${BATCH_TYPE} (a batch), got ""` },
    'none at all: named as empty',
  )
  const none = await post(encodeReading(reading(2)), { 'content-type': '' })
  t.same(
    none.json,
    { error: `Content-Type must be application/json (one reading) or ${BATCH_TYPE} (a batch), got ""` },
    'an empty one is named as empty',
  )
  t.equal(none.headers['content-type'], 'application/json', 'errors are JSON')
  t.ok(none.text.endsWith('}\n'), 'one JSON document and a newline')
})

t.test('who signed: an empty device header is a missing one; the errors say what to send', async (t) => {
  const { post } = start(t)
  const body = encodeReading(reading(1))
  t.same((await post(body, { 'x-device-id': '' })).json, {
    error: 'header x-device-id is missing: name the device whose key signed the body',
  })
  t.same(
    (await post(body, { 'x-device-id': 'Dev 1' })).json,
    { error: 'unknown device "Dev 1"' },
    'not a device id: never looked up',
  )
  t.same((await post(body, { 'x-signature': '' })).json, {
    error: "the signature does not match the body under dev-1's key",
  })
  const other = encodeReading({ ...reading(1), device: 'dev-2' })
  t.same((await post(other)).json, { error: 'the body names device dev-2 but was signed by dev-1' })
})

t.test(
  'what the store answers: a refused value is a 400 on "time", a reused seq a 409, a failure a 503 to retry',
  async (t) => {
    const { store, post, logs } = start(t)
    store.answer = 'invalid'
    const invalid = await post(encodeReading(reading(1)))
    t.same(
      [invalid.status, invalid.json],
      [400, { error: "the database refused this reading's values (is the time a real date?)", field: 'time' }],
    )
    store.answer = 'conflict'
    const conflict = await post(encodeReading(reading(7)))
    t.same(
      [conflict.status, conflict.json],
      [409, { error: 'device dev-1 already sent a different reading with seq 7', field: 'seq' }],
    )
    store.answer = undefined
    store.insertFails = true
    const down = await post(encodeReading(reading(8)))
    t.same([down.status, down.json], [503, { error: 'the database is unavailable; retry later' }])
    t.equal(down.headers['retry-after'], '1', 'a 503 says when to retry')
    t.not(down.headers.connection, 'close', 'and keeps the connection')
    t.same(
      logs,
      [
        "POST /readings 400: the database refused this reading's values (is the time a real date?)",
        'POST /readings 409: device dev-1 already sent a different reading with seq 7',
        'store failed: connect ECONNREFUSED 10.30.0.20:5432',
      ],
      "each refusal logged with method, path and status; a store failure logged once, as the store's error",
    )
    const plain = await post(encodeReading({ ...reading(9), device: 'dev-2' }))
    t.notOk('retry-after' in plain.headers, 'a 401 has no Retry-After')
    t.not(plain.headers.connection, 'close', 'nor closes the connection')
  },
)

t.test('a batch of exactly the maximum size and count is taken; one more byte, line or reading is a 413', async (t) => {
  const { batch, store } = start(t)
  // 512 lines of 1024 bytes with their newlines: exactly MAX_BATCH_BYTES.
  const full = Array.from({ length: MAX_BATCH_BYTES / 1024 }, (_, i) => paddedLine(1 + i, 1023))
  const ok = await batch(full)
  t.equal(ok.status, 200, `${MAX_BATCH_BYTES} bytes: answered`)
  t.equal(store.rows.size, full.length, 'every line stored')
  const over = await batch([...full.slice(0, -1), paddedLine(600, 1024)])
  t.same(
    [over.status, over.json],
    [413, { error: `a batch is at most ${MAX_BATCH_BYTES} bytes; this body is ${MAX_BATCH_BYTES + 1}` }],
  )
  t.equal(over.headers.connection, 'close')
  const chunked = await batch([...full.slice(0, -1), paddedLine(601, 1024)], true)
  t.same(
    [chunked.status, chunked.json],
    [413, { error: `a batch is at most ${MAX_BATCH_BYTES} bytes` }],
    'chunked: refused as it grows',
  )
  const count = Array.from({ length: MAX_BATCH_READINGS }, (_, i) =>
    batchLine(encodeReading(reading(1000 + i)), sign(key, encodeReading(reading(1000 + i)))),
  )
  t.equal((await batch(count)).status, 200, `${MAX_BATCH_READINGS} readings: answered`)
  const line = await batch([paddedLine(3000, MAX_BODY_BYTES + 128), paddedLine(3001, MAX_BODY_BYTES + 129)])
  t.same(
    (line.json.results as object[]).map((r) => r),
    [
      { line: 1, device: 'dev-1', seq: 3000, status: 'stored', code: 201 },
      { line: 2, status: 'refused', code: 413, error: `line 2: a reading is at most ${MAX_BODY_BYTES} bytes` },
    ],
    'a line may be 128 bytes longer than a reading (its signature), not one more',
  )
})

t.test("a batch's lines: the last needs no newline, each answer names its line, device and seq", async (t) => {
  const { batch, store } = start(t, (d) => (d === 'dev-1' ? key : d === 'dev-3' ? Buffer.alloc(32, 3) : undefined))
  const signed = (r: Reading, k = key) => batchLine(encodeReading(r), sign(k, encodeReading(r)))
  store.rows.set('dev-1/5', reading(5))
  const a = await batch(
    [
      signed(reading(4)),
      signed(reading(5)),
      signed({ ...reading(6), device: 'dev-9' }),
      signed({ ...reading(6), device: 'dev-3' }),
      '[]',
      '{"device":"dev-1","seq":8,"time":"2026-11-25T12:00:00Z","value":1}',
      signed(reading(9)),
    ],
    false,
    false,
  )
  t.same(
    a.json,
    {
      results: [
        { line: 1, device: 'dev-1', seq: 4, status: 'stored', code: 201 },
        { line: 2, device: 'dev-1', seq: 5, status: 'duplicate', code: 200 },
        { line: 3, device: 'dev-9', seq: 6, status: 'retry', code: 401, error: 'line 3: unknown device "dev-9"' },
        {
          line: 4,
          device: 'dev-3',
          seq: 6,
          status: 'retry',
          code: 401,
          error: "line 4: the signature does not match the reading under dev-3's key",
        },
        {
          line: 5,
          status: 'refused',
          code: 400,
          error: 'line 5: a line must be a JSON object {device, seq, time, value, signature}',
        },
        {
          line: 6,
          status: 'refused',
          code: 400,
          error: 'line 6: field "signature" is missing: v1=<hex HMAC-SHA256 of the reading\'s body>',
          field: 'signature',
        },
        { line: 7, device: 'dev-1', seq: 9, status: 'stored', code: 201 },
      ],
    },
    'seven lines, no newline after the last: seven answers, in order, as each would be answered alone',
  )
  store.answer = 'conflict'
  const c = await batch([signed(reading(4))])
  t.same(c.json, {
    results: [
      {
        line: 1,
        device: 'dev-1',
        seq: 4,
        status: 'refused',
        code: 409,
        error: 'line 1: device dev-1 already sent a different reading with seq 4',
        field: 'seq',
      },
    ],
  })
  store.answer = 'invalid'
  const i = await batch([signed(reading(10))])
  t.same(i.json, {
    results: [
      {
        line: 1,
        device: 'dev-1',
        seq: 10,
        status: 'refused',
        code: 400,
        error: "line 1: the database refused this reading's values (is the time a real date?)",
        field: 'time',
      },
    ],
  })
  t.same((await batch([], false, false)).json, { error: 'the batch is empty: one signed reading per line' })
  t.same(
    (await batch(['', ''], false, false)).json,
    {
      results: [
        {
          line: 1,
          status: 'refused',
          code: 400,
          error: 'line 1: the line is not valid JSON: Unexpected end of JSON input',
        },
      ],
    },
    'a lone newline is one empty line, not an empty batch',
  )
})

t.test(
  'a batch while the database fails: only the lines that reached it are 503 (retry); all of them, a 503 for the whole',
  async (t) => {
    const { batch, store } = start(t)
    store.insertFails = true
    const signed = (r: Reading) => batchLine(encodeReading(r), sign(key, encodeReading(r)))
    const some = await batch(['{"signature":"v1=00"}', signed(reading(1))])
    t.equal(some.status, 200, 'a line refused before the database: the batch is answered line by line')
    t.same(some.json, {
      results: [
        { line: 1, status: 'refused', code: 400, error: 'line 1: field "device" is missing', field: 'device' },
        {
          line: 2,
          device: 'dev-1',
          seq: 1,
          status: 'retry',
          code: 503,
          error: 'the database is unavailable; retry later',
        },
      ],
    })
    const all = await batch([signed(reading(2)), signed(reading(3))])
    t.same(
      [all.status, all.json, all.headers['retry-after']],
      [503, { error: 'the database is unavailable; retry later' }, '1'],
    )
  },
)

t.test(
  'the read endpoint: the path exactly, the device id, after and limit checked with the field named',
  async (t) => {
    const { call, store, logs } = start(t)
    const get = (path: string) => call('GET', path)
    t.same(await get('/devices/dev-1/readings').then((r) => [r.status, r.json]), [
      200,
      { device: 'dev-1', readings: [] },
    ])
    t.same(
      await get('/devices/dev-1/readings?after=0&limit=1').then((r) => r.status),
      200,
      'after 0, limit 1: the smallest',
    )
    t.same(
      await get('/devices/dev-1/readings?after=5&limit=1000').then((r) => r.status),
      200,
      'limit 1000: the largest',
    )
    t.same(
      store.listed,
      [
        ['dev-1', 0, 100],
        ['dev-1', 0, 1],
        ['dev-1', 5, 1000],
      ],
      'the defaults: after 0, limit 100',
    )
    const bad: [string, number, Record<string, unknown>][] = [
      ['/devices/Dev%201/readings', 400, { error: 'not a device id: "Dev 1"', field: 'device' }],
      [
        '/devices/dev-1/readings?after=-1',
        400,
        { error: 'query "after" must be a sequence number (0 or more)', field: 'after' },
      ],
      [
        '/devices/dev-1/readings?after=1.5',
        400,
        { error: 'query "after" must be a sequence number (0 or more)', field: 'after' },
      ],
      ['/devices/dev-1/readings?limit=0', 400, { error: 'query "limit" must be from 1 to 1000', field: 'limit' }],
      ['/devices/dev-1/readings?limit=1001', 400, { error: 'query "limit" must be from 1 to 1000', field: 'limit' }],
      ['/devices/dev-1/readings?limit=ten', 400, { error: 'query "limit" must be from 1 to 1000', field: 'limit' }],
      ['/api/devices/dev-1/readings', 404, { error: 'no such resource: /api/devices/dev-1/readings' }],
      ['/devices/dev-1/readings/1', 404, { error: 'no such resource: /devices/dev-1/readings/1' }],
    ]
    for (const [path, status, json] of bad)
      t.same(await get(path).then((r) => [r.status, r.json]), [status, json], path)
    store.listFails = true
    const down = await get('/devices/dev-1/readings')
    t.same(
      [down.status, down.json, down.headers['retry-after']],
      [503, { error: 'the database is unavailable; retry later' }, '1'],
    )
    t.equal(logs.at(-1), 'list failed: the pool is closed', "the store's error is logged")
    t.notOk(
      logs.some((l) => l.startsWith('GET /devices/dev-1/readings 503')),
      'a 503 is not logged again as a refusal',
    )
    t.ok(logs.includes('GET /devices/Dev%201/readings 400: not a device id: "Dev 1"'), 'a refusal is')
    const wrong = await call('POST', '/devices/dev-1/readings')
    t.same(
      [wrong.status, wrong.json, wrong.headers.allow],
      [405, { error: '/devices/dev-1/readings accepts GET only' }, 'GET'],
    )
  },
)

t.test('health names the backend and what is wrong', async (t) => {
  const { call, store, logs } = start(t)
  t.same(await call('GET', '/healthz').then((r) => [r.status, r.json]), [200, { status: 'ok', backend: 'backend-7' }])
  store.insertFails = true
  t.same(await call('GET', '/healthz').then((r) => [r.status, r.json]), [
    503,
    { status: 'database unreachable', backend: 'backend-7' },
  ])
  t.same(logs, ['health check: the database is unreachable: connect ECONNREFUSED'])
  const post = await call('POST', '/healthz')
  t.same([post.status, post.json, post.headers.allow], [405, { error: '/healthz accepts GET only' }, 'GET'])
})

t.test(
  'the metrics a dashboard reads: names, help, every refusal reason from zero, requests in flight back to zero',
  async (t) => {
    const { call, post, batch, store } = start(t)
    const fresh = await call('GET', '/metrics')
    t.equal(fresh.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8', 'Prometheus text format')
    for (const reason of [
      'malformed',
      'unauthorized',
      'too_large',
      'unsupported_media_type',
      'conflict',
      'method_not_allowed',
    ]) {
      t.match(
        fresh.text,
        new RegExp(`^ingest_readings_rejected_total\\{reason="${reason}"\\} 0$`, 'm'),
        `${reason}: at 0 before any refusal (so rate() has a series)`,
      )
    }
    t.matchSnapshot(
      fresh.text
        .split('\n')
        .filter((l) => /^# (HELP|TYPE) ingest_/.test(l))
        .join('\n'),
      "the ingest metrics' names, types and help",
    )
    t.match(
      fresh.text,
      /^ingest_request_duration_seconds_bucket\{le="0.001"\} 0$/m,
      'the latency buckets start at 1 ms',
    )
    t.match(fresh.text, /^ingest_request_duration_seconds_bucket\{le="5"\} 0$/m, 'and end at 5 s')
    await post(encodeReading(reading(1)))
    await post(encodeReading(reading(1)), { 'content-type': 'text/plain' })
    await call('GET', '/readings')
    await call('GET', '/devices/-/readings')
    await call('GET', '/nothing')
    await batch([batchLine(encodeReading(reading(2)), sign(key, encodeReading(reading(2)))), '{}'])
    const m = (await call('GET', '/metrics')).text
    const sample = (name: string) => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(m)?.[1])
    t.equal(sample('ingest_requests_in_flight'), 0, 'no request left in flight')
    t.equal(
      sample('ingest_request_duration_seconds_count'),
      3,
      'three POSTs to /readings timed (the GET was refused before)',
    )
    t.equal(sample('ingest_readings_accepted_total'), 2)
    t.equal(sample('ingest_batch_requests_total'), 1)
    t.equal(sample('ingest_batch_readings_total'), 2)
    t.equal(sample('ingest_readings_rejected_total{reason="unsupported_media_type"}'), 1)
    t.equal(sample('ingest_readings_rejected_total{reason="method_not_allowed"}'), 1, 'GET /readings')
    t.equal(
      sample('ingest_readings_rejected_total{reason="malformed"}'),
      1,
      "the batch's bad line; not the bad device id of a GET elsewhere",
    )
    store.insertFails = true
    t.equal((await post(encodeReading(reading(3)))).status, 503)
    const after = (await call('GET', '/metrics')).text
    t.match(after, /^ingest_store_errors_total 1$/m, 'a database failure is counted as a store error')
    t.notMatch(after, /reason="store"/, 'and not as a refusal of the reading')
  },
)

t.test(
  'a fault inside the server is a 500 that says nothing of it to the client, and its stack in the log',
  async (t) => {
    const { post, logs } = start(t, () => {
      throw new Error('the key file is unreadable')
    })
    const r = await post(encodeReading(reading(1)))
    t.same([r.status, r.json], [500, { error: 'internal error' }])
    t.match(
      logs.at(-1),
      /^internal error on POST \/readings: Error: the key file is unreadable\n\s+at /,
      'the stack, for the operator',
    )
  },
)

t.test('a server given no log function still answers (it logs nowhere)', async (t) => {
  const { post } = start(t, undefined, false)
  const r = await post(encodeReading({ ...reading(1), device: 'dev-2' }))
  t.equal(r.status, 401, 'a refusal, which is logged when there is a log')
})

t.test('something thrown that is not an Error is logged as what it is', async (t) => {
  const { post, logs } = start(t, () => {
    throw 'the key store is locked' as unknown as Error
  })
  t.equal((await post(encodeReading(reading(1)))).status, 500)
  t.equal(logs.at(-1), 'internal error on POST /readings: the key store is locked')
})

t.test('a client that goes away mid-body leaves no request counted in flight', async (t) => {
  const { call, port } = start(t)
  const req = http.request({
    host: '127.0.0.1',
    port: await port,
    method: 'POST',
    path: '/readings',
    headers: { 'content-type': 'application/json', 'content-length': 500 },
  })
  req.on('error', () => {})
  req.write('{"device":"dev-1",')
  const inFlight = async () =>
    Number(/^ingest_requests_in_flight (\S+)$/m.exec((await call('GET', '/metrics')).text)?.[1])
  await waitFor('the request in flight', async () => (await inFlight()) === 1, 2000, 10).catch(() => undefined)
  t.equal(await inFlight(), 1, 'control: the request is in flight while its body comes')
  req.destroy()
  await waitFor('no request in flight', async () => (await inFlight()) === 0, 2000, 10).catch(() => undefined)
  t.equal(await inFlight(), 0, 'the client gone: the request ended')
})

t.test('each refusal counted under its reason, a database failure under none of them', async (t) => {
  const { store, post, batch, call } = start(t, (d) =>
    d === 'dev-1' ? key : d === 'dev-3' ? Buffer.alloc(32, 3) : undefined,
  )
  const signed = (r: Reading, k = key) => batchLine(encodeReading(r), sign(k, encodeReading(r)))
  const reasons = async () => {
    const text = (await call('GET', '/metrics')).text
    return Object.fromEntries(
      [...text.matchAll(/^ingest_readings_rejected_total\{reason="([^"]*)"\} (\S+)$/gm)].map((m) => [
        m[1],
        Number(m[2]),
      ]),
    )
  }
  const zero = {
    malformed: 0,
    unauthorized: 0,
    too_large: 0,
    unsupported_media_type: 0,
    conflict: 0,
    method_not_allowed: 0,
  }
  t.same(await reasons(), zero, 'the six reasons, at 0')
  const steps: [string, () => Promise<unknown>, keyof typeof zero][] = [
    [
      'the database refused a value',
      async () => {
        store.answer = 'invalid'
        await post(encodeReading(reading(1)))
        store.answer = undefined
      },
      'malformed',
    ],
    [
      'a reused seq',
      async () => {
        store.answer = 'conflict'
        await post(encodeReading(reading(1)))
        store.answer = undefined
      },
      'conflict',
    ],
    ['a batch declared too big', () => batch([paddedLine(1, 1023), 'x'.repeat(MAX_BATCH_BYTES)]), 'too_large'],
    [
      'a batch sent chunked, too big',
      () =>
        batch(
          Array.from({ length: 520 }, (_, i) => paddedLine(100 + i, 1023)),
          true,
        ),
      'too_large',
    ],
    ['a reading sent chunked, too big', () => post(padded(5, MAX_BODY_BYTES + 1), {}, true), 'too_large'],
    ['an empty batch', () => batch([], false, false), 'malformed'],
    [
      'a batch of too many readings',
      () => batch(Array.from({ length: MAX_BATCH_READINGS + 1 }, () => '{}')),
      'too_large',
    ],
    ['a batch line too long', () => batch([paddedLine(2, MAX_BODY_BYTES + 129)]), 'too_large'],
    ['a batch line of an unknown device', () => batch([signed({ ...reading(3), device: 'dev-9' })]), 'unauthorized'],
    ['a batch line signed by another key', () => batch([signed({ ...reading(3), device: 'dev-3' })]), 'unauthorized'],
  ]
  let want = { ...zero }
  for (const [what, act, reason] of steps) {
    await act()
    want = { ...want, [reason]: want[reason] + 1 }
    t.same(await reasons(), want, `${what}: one more ${reason}`)
  }
  store.insertFails = true
  await post(encodeReading(reading(4)))
  await batch([signed(reading(5))])
  t.same(
    await reasons(),
    want,
    'the database down, for one reading and for a batch: no refusal counted, under any name',
  )
})
