// The sender's decisions, each against a local server whose every answer the test
// scripts: what is acknowledged, refused for good or retried, with which reason; when it
// falls back from batches to single readings; what it says went wrong (the client's log
// and lab:status show lastError); that it backs off instead of hammering a dead path,
// and that it stops. test/unit/client.ts runs it end to end with the outbox.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { DEFAULTS, Sender, jitter, nextBackoff, postBatch, type SenderOptions } from '../../services/client/sender.js'
import type { Entry } from '../../services/client/outbox.js'
import { BATCH_TYPE, encodeReading, parseBatchLine, verify } from '../../services/lib/reading.js'
import { waitFor } from '../../provision/lib/wait.js'

const key = Buffer.alloc(32, 5)
const entry = (seq: number, device = 'dev-1'): Entry => ({
  device,
  seq,
  body: encodeReading({ device, seq, time: '2026-12-02T00:00:00.000Z', value: seq }),
  segment: 1,
  index: seq,
})

interface Seen {
  type: string
  body: string
  at: number
  socket: Socket
  signedOk: boolean
}
type Reply = (seen: Seen, res: http.ServerResponse) => void
/** Answers `body` with `status` (and headers); `null` for a request left unanswered. */
const answer =
  (status: number, body: unknown = '{}', headers: Record<string, string> = {}): Reply =>
  (_s, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers })
    res.end(typeof body === 'string' ? body : JSON.stringify(body))
  }

/** A server that answers each request with the next scripted reply (the last one repeats). */
async function server(t: Test, ...replies: (Reply | null)[]) {
  const seen: Seen[] = []
  const sockets = new Set<Socket>()
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      const type = req.headers['content-type'] ?? ''
      const signedOk =
        type === BATCH_TYPE
          ? body
              .trim()
              .split('\n')
              .every((l) => {
                const p = parseBatchLine(l)
                return p.ok && verify(key, Buffer.from(p.canonical), p.signature)
              })
          : verify(key, Buffer.from(body), req.headers['x-signature'] as string)
      const s: Seen = { type, body, at: Date.now(), socket: req.socket, signedOk }
      seen.push(s)
      const reply = replies[Math.min(seen.length, replies.length) - 1]
      if (reply) reply(s, res)
    })
  })
  srv.on('connection', (s) => {
    sockets.add(s)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    srv.close()
  })
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/readings`, seen, sockets }
}

/** An outbox stand-in that records what the sender takes and gives back. */
function source(entries: Entry[]) {
  const s = {
    queue: [...entries],
    takes: 0,
    retried: [] as Entry[][],
    take(max: number) {
      s.takes++
      return s.queue.splice(0, max)
    },
    retry(e: Entry[]) {
      s.retried.push(e)
      s.queue.unshift(...e)
    },
  }
  return s
}

/** A sender with every callback recorded; stopped at the test's end. */
function sender(t: Test, url: string, entries: Entry[], opts: Partial<SenderOptions> = {}) {
  const src = source(entries)
  const acked: [number, number, string | undefined][] = []
  const rejected: [number, number, string][] = []
  const retries: [number[], string][] = []
  const logs: string[] = []
  const s = new Sender({
    url,
    keyOf: () => key,
    source: src,
    concurrency: 1,
    batch: 1,
    maxBackoffMs: 100,
    log: (l) => logs.push(l),
    onAck: (e, status, upstream) => acked.push([e.seq, status, upstream]),
    onReject: (e, status, reason) => rejected.push([e.seq, status, reason]),
    ...opts,
    onRetry: (e, why) => {
      retries.push([e.map((x) => x.seq), why])
      opts.onRetry?.(e, why)
    },
  })
  const running = s.start()
  t.teardown(() => s.stop())
  return { s, src, acked, rejected, retries, logs, running }
}

/** Polls until `done()` holds (5 s at most: past that the sender is stuck, not slow). */
const until = (what: string, done: () => boolean) => waitFor(what, () => Promise.resolve(done()), 5000, 5)

t.test('the backoff: doubled from 100 ms to its cap; each wait between half and all of it', async (t) => {
  t.same(
    [0, 100, 200, 2000, 4000].map((b) => nextBackoff(b, 5000)),
    [100, 200, 400, 4000, 5000],
  )
  t.equal(nextBackoff(0, 50), 50, 'a cap under 100 ms is still the cap')
  t.same(
    [0, 0.5, 1].map((r) => jitter(400, r)),
    [200, 300, 400],
  )
  t.ok(jitter(400) >= 200 && jitter(400) <= 400, 'with Math.random by default')
  t.same(
    DEFAULTS,
    { timeoutMs: 5000, batchTimeoutMs: 10_000, maxBackoffMs: 5000 },
    'the defaults services/README.md states',
  )
})

t.test(
  'one per request: 201 and 200 acknowledged with the upstream; a permanent refusal kept aside with its reason; the rest retried',
  async (t) => {
    const srv = await server(
      t,
      answer(201, '{}', { 'x-upstream': '10.20.0.21:8080' }),
      answer(200, '{}', { 'x-upstream': '10.20.0.22:8080' }),
      answer(409, '  {"error":"seq reused"}\n'),
      answer(503, `\n ${'x'.repeat(300)} `),
      answer(201),
    )
    const x = sender(t, srv.url, [entry(1), entry(2), entry(3), entry(4)])
    await until('four readings settled', () => x.acked.length + x.rejected.length === 4)
    t.same(x.acked, [
      [1, 201, '10.20.0.21:8080'],
      [2, 200, '10.20.0.22:8080'],
      [4, 201, undefined],
    ])
    t.same(x.rejected, [[3, 409, '{"error":"seq reused"}']], 'the reason as the server gave it, trimmed')
    t.same(
      x.retries,
      [[[4], `HTTP 503 ${'x'.repeat(200)}`]],
      'the 503 retried, its body trimmed and cut at 200 characters',
    )
    t.same(
      x.src.retried.map((e) => e.map((r) => r.seq)),
      [[4]],
      'only the failed one given back to the outbox',
    )
    t.equal(x.s.retries, 1)
    t.equal(x.s.lastError, undefined, 'a success clears the last error')
    t.ok(
      srv.seen.every((r) => r.type === 'application/json' && r.signedOk),
      'each signed, as application/json',
    )
    t.equal(srv.sockets.size, 1, 'one kept-alive connection for all five requests')
  },
)

t.test('every status that is not an answer about the reading is retried, with backoff, until it is', async (t) => {
  const srv = await server(t, answer(401), answer(500), answer(502), answer(429), answer(201))
  const backoffs: number[] = []
  const x = sender(t, srv.url, [entry(1)], {
    onRetry: () => {
      queueMicrotask(() => backoffs.push(x.s.backoffMs))
    },
  })
  await until('the reading acknowledged', () => x.acked.length === 1)
  t.same(
    x.retries.map(([, why]) => why),
    ['HTTP 401 {}', 'HTTP 500 {}', 'HTTP 502 {}', 'HTTP 429 {}'],
  )
  t.same(backoffs, [100, 100, 100, 100], 'the backoff held at the cap given (100 ms)')
  t.same(x.rejected, [], 'none refused for good')
  const gaps = srv.seen.slice(1).map((r, i) => r.at - srv.seen[i].at)
  // Backoff 100 ms after the first failure (capped at 100 here): each wait at least half of it.
  t.ok(
    gaps.every((g) => g >= 45),
    `each retry waited (gaps ${gaps.join(', ')} ms)`,
  )
})

t.test('a server that does not answer: the request times out, named with its limit, and is retried', async (t) => {
  const srv = await server(t, null, answer(201))
  const x = sender(t, srv.url, [entry(1)], { timeoutMs: 150 })
  await until('the reading acknowledged', () => x.acked.length === 1)
  t.same(x.retries, [[[1], 'no answer in 150 ms']])
  const saved = { ...DEFAULTS }
  t.teardown(() => Object.assign(DEFAULTS, saved))
  DEFAULTS.timeoutMs = 120
  DEFAULTS.batchTimeoutMs = 130
  const one = await server(t, null, answer(201))
  const y = sender(t, one.url, [entry(2)], { timeoutMs: undefined })
  await until('the reading acknowledged', () => y.acked.length === 1)
  t.same(y.retries, [[[2], 'no answer in 120 ms']], 'no timeout given: the default')
  const many = await server(t, null, answer(200, { results: [{ status: 'stored', code: 201 }] }))
  const z = sender(t, many.url, [entry(3)], { timeoutMs: undefined, batch: 5 })
  await until('the reading acknowledged', () => z.acked.length === 1)
  t.same(z.retries, [[[3], 'no answer in 130 ms']], 'and the batch default for a batch')
})

t.test(
  'batches: each line settled by its own answer; a malformed or short answer retries the whole batch',
  async (t) => {
    const results = [
      { status: 'stored', code: 201 },
      { status: 'duplicate', code: 200 },
      { status: 'refused', code: 400, error: 'line 3: field "value" must be a finite number' },
      { status: 'retry', code: 503, error: 'the database is unavailable' },
      { status: 'refused', code: 413 },
    ]
    const srv = await server(
      t,
      answer(200, { results }, { 'x-upstream': '10.20.0.22:8080' }),
      answer(200, ` not json ${'y'.repeat(300)}\n`),
      answer(200, { results: [] }),
      answer(503, { results: [{ status: 'stored', code: 201 }] }),
      answer(200, { results: [{ status: 'stored', code: 201 }] }),
    )
    const x = sender(t, srv.url, [entry(1), entry(2), entry(3), entry(4), entry(5)], { batch: 5 })
    await until('all five settled', () => x.acked.length + x.rejected.length === 5)
    t.same(x.acked, [
      [1, 201, '10.20.0.22:8080'],
      [2, 200, '10.20.0.22:8080'],
      [4, 201, undefined],
    ])
    t.same(
      x.rejected,
      [
        [3, 400, 'line 3: field "value" must be a finite number'],
        [5, 413, 'refused'],
      ],
      "the line's error, or its status when it has none",
    )
    t.equal(x.s.backoffMs, 0, 'delivered: no backoff left')
    t.same(
      x.retries,
      [
        [[4], 'HTTP 503 the database is unavailable (in a batch)'],
        [[4], `HTTP 200 not json ${'y'.repeat(191)}`],
        [[4], 'HTTP 200 {"results":[]}'],
        [[4], 'HTTP 503 {"results":[{"status":"stored","code":201}]}'],
      ],
      'a line to retry; then an answer that is not JSON, one with too few results, and results under a 503: the batch again',
    )
    t.equal(srv.seen[0].type, BATCH_TYPE)
    t.ok(srv.seen[0].signedOk, 'each line signed by its device')
    t.equal(srv.seen[0].body.split('\n').length, 6, 'five lines, each ending in a newline')
  },
)

for (const status of [415, 404]) {
  t.test(
    `a server that takes no batches (HTTP ${status}): one reading per request from then on, without counting it a failure`,
    async (t) => {
      const srv = await server(t, answer(status), answer(201))
      const x = sender(t, srv.url, [entry(1), entry(2)], { batch: 10 })
      await until('both acknowledged', () => x.acked.length === 2)
      t.same(x.logs, [`the server refused a batch (HTTP ${status}): sending one reading per request from now on`])
      t.same(
        srv.seen.map((r) => r.type),
        [BATCH_TYPE, 'application/json', 'application/json'],
      )
      t.same(x.retries, [], 'not a delivery failure: no retry counted, no backoff')
      t.equal(x.s.retries, 0)
      t.ok(srv.seen[1].at - srv.seen[0].at < 45 || x.retries.length === 0, 'and sent again at once')
    },
  )
}

t.test('a broken connection is retried with its error; a success after clears it', async (t) => {
  const srv = await server(
    t,
    (s) => {
      s.socket.destroy()
    },
    answer(201),
  )
  const x = sender(t, srv.url, [entry(1)])
  await until('a retry', () => x.retries.length === 1)
  t.match(x.retries[0][1], /socket hang up|ECONNRESET/)
  t.match(x.s.lastError, /socket hang up|ECONNRESET/, 'lastError says so meanwhile')
  await until('the reading acknowledged', () => x.acked.length === 1)
  t.equal(x.s.lastError, undefined)
})

t.test('idle: it waits for notify, then sends; stop ends every worker, even one in its backoff', async (t) => {
  const srv = await server(t, answer(201))
  const x = sender(t, srv.url, [], { concurrency: 2 })
  await until('both workers found nothing', () => x.src.takes >= 2)
  const takes = x.src.takes
  await new Promise((r) => setTimeout(r, 50))
  t.equal(x.src.takes, takes, 'nothing to send: it waits, not polls')
  x.src.queue.push(entry(1))
  x.s.notify()
  await until('the reading acknowledged', () => x.acked.length === 1)
  x.s.stop()
  let ended = false
  void x.running.then(() => {
    ended = true
  })
  await until('the workers ended', () => ended)

  const dead = await server(t, answer(503))
  const y = sender(t, dead.url, [entry(2)], { maxBackoffMs: 300 })
  await until('a failure, then its backoff', () => y.retries.length === 2)
  y.s.stop()
  const after = y.src.takes
  let yEnded = false
  void y.running.then(() => {
    yEnded = true
  })
  await until('the worker ended', () => yEnded)
  t.equal(y.src.takes, after, 'nothing taken after stop')
})

let tls: { key: string; cert: string } | undefined
const tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sender-tls-'))
try {
  const keyFile = path.join(tlsDir, 'key.pem')
  const cert = execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-subj',
      '/CN=elsewhere.example',
      '-days',
      '1',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  ).toString()
  tls = { key: fs.readFileSync(keyFile, 'utf8'), cert }
} catch {
  /* skipped below with the reason */
} finally {
  fs.rmSync(tlsDir, { recursive: true, force: true })
}

t.test(
  'an https URL is spoken to in TLS (and a certificate it cannot trust is the error it names)',
  { skip: tls ? false : 'the openssl command is not installed: `npm test` installs it as root' },
  async (t) => {
    const srv = https.createServer(tls!, (_req, res) => {
      res.writeHead(201)
      res.end('{}')
    })
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
    t.teardown(() => srv.close())
    const x = sender(t, `https://127.0.0.1:${(srv.address() as AddressInfo).port}/readings`, [entry(1)])
    await until('a retry', () => x.retries.length >= 1)
    t.match(x.retries[0][1], /self[- ]signed certificate/, `the TLS handshake's verdict (${x.retries[0][1]})`)
  },
)

t.test('postBatch alone: a non-200 has no results to read', async (t) => {
  const srv = await server(t, answer(502, { results: [{ code: 201 }] }))
  const r = await postBatch(new URL(srv.url), new http.Agent(), [entry(1)], () => key, 1000)
  t.same(r, { answer: { status: 502, body: '{"results":[{"code":201}]}', upstream: undefined } })
})

t.test(
  'a batch answered with a line that is not a result, or a retry without its error: retried, and said so',
  async (t) => {
    const srv = await server(
      t,
      answer(200, { results: [null, { status: 'retry', code: 503 }, { status: 'stored', code: 201 }] }),
      answer(200, {
        results: [
          { status: 'stored', code: 201 },
          { status: 'stored', code: 201 },
        ],
      }),
    )
    const x = sender(t, srv.url, [entry(1), entry(2), entry(3)], { batch: 3 })
    await until('all three acknowledged', () => x.acked.length === 3)
    t.same(
      x.acked.map(([seq]) => seq),
      [3, 1, 2],
      'the stored line acknowledged at once, the other two after their retry',
    )
    t.same(x.retries, [[[1, 2], 'HTTP 503 (in a batch)']], "the last failed line's status, with no error to add")
  },
)

t.test('a response cut off mid-body is retried, not waited on forever', async (t) => {
  const srv = await server(
    t,
    (_s, res) => {
      res.writeHead(201, { 'content-length': 100 })
      res.write('{"status"')
      setTimeout(() => res.socket?.destroy(), 20)
    },
    answer(201),
  )
  const x = sender(t, srv.url, [entry(1)], { timeoutMs: 3000 })
  await until('the reading acknowledged', () => x.acked.length === 1)
  t.equal(x.retries.length, 1)
  t.match(x.retries[0][1], /aborted|ECONNRESET|socket hang up/, `the cut named (${x.retries[0][1]})`)
})

t.test(
  'the defaults: the backoff cap when none is given; notify while no worker waits; falling back with no log',
  async (t) => {
    const srv = await server(t, answer(503), answer(503), answer(415), answer(201))
    const backoffs: number[] = []
    const x = sender(t, srv.url, [entry(1)], {
      maxBackoffMs: undefined,
      log: undefined,
      batch: 2,
      onRetry: () => {
        queueMicrotask(() => backoffs.push(x.s.backoffMs))
      },
    })
    x.s.notify()
    x.s.notify()
    t.pass('notify with the worker busy: nothing to wake, no error')
    await until('the reading acknowledged', () => x.acked.length === 1)
    t.same(backoffs, [100, 200], 'doubling from 100 ms under the default cap')
    t.same(
      x.retries.map(([, why]) => why),
      ['HTTP 503 {}', 'HTTP 503 {}'],
      'the fallback to one per request is no failure, even with no log to tell',
    )
  },
)
