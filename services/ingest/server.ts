// The ingest server's HTTP handling, apart from where readings are kept (the Store)
// so that it is tested without a database. Bad input gets its own status and a JSON
// error naming what is wrong; it never reaches the store, and never crashes the server.
import { createHash } from 'node:crypto'
import http from 'node:http'
import { Counter, Gauge, Histogram, serviceRegistry, type Registry } from '../lib/metrics.js'
import {
  BATCH_TYPE,
  DEVICE_HEADER,
  DEVICE_ID,
  MAX_BATCH_BYTES,
  MAX_BATCH_READINGS,
  MAX_BODY_BYTES,
  SIGNATURE_HEADER,
  encodeReading,
  parseBatchLine,
  parseReading,
  verify,
  type Reading,
} from '../lib/reading.js'

/** invalid: the database refused the reading's data (a date that does not exist, say). */
export type InsertResult = 'stored' | 'duplicate' | 'conflict' | 'invalid'
export interface StoredReading extends Reading {
  backend: string
  received: string
}

export interface Store {
  /** Store once: the same device and seq again is 'duplicate' if it is the same reading, 'conflict' if not. */
  insert(r: Reading, digest: string, backend: string): Promise<InsertResult>
  list(device: string, after: number, limit: number): Promise<StoredReading[]>
  healthy(): Promise<boolean>
}

export interface IngestOptions {
  store: Store
  /** The current device keys (reloadable, so a lookup each time). */
  keyOf: (device: string) => Buffer | undefined
  backend: string
  log?: (line: string) => void
  /** More metrics, from the parts the handler does not see (the store's batching). */
  metrics?: (registry: Registry) => void
}

/** What identifies a reading's content, to tell a retry from a different reading with a reused seq. */
export const digestOf = (r: Reading) => createHash('sha256').update(encodeReading(r)).digest('hex')

class HttpError extends Error {
  readonly headers: Record<string, string>
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly field?: string,
    headers: Record<string, string> = {},
  ) {
    super(message)
    // A 503 says when to retry; after a 413 the rest of the body is left unread, so the
    // connection cannot be reused.
    this.headers = {
      ...(status === 503 ? { 'retry-after': '1' } : {}),
      ...(status === 413 ? { connection: 'close' } : {}),
      ...headers,
    }
  }
}

export function ingestHandler(opts: IngestOptions) {
  const log = opts.log ?? (() => {})
  const registry = serviceRegistry()
  const reasons = ['malformed', 'unauthorized', 'too_large', 'unsupported_media_type', 'conflict', 'method_not_allowed']
  const counter = (name: string, help: string, labelNames: string[] = []) =>
    new Counter({ name, help, labelNames, registers: [registry] })
  const accepted = counter('ingest_readings_accepted_total', 'Readings stored for the first time')
  const duplicates = counter(
    'ingest_readings_duplicate_total',
    'Readings already stored (a retry), answered as success',
  )
  const rejected = counter('ingest_readings_rejected_total', 'Readings refused, by reason', ['reason'])
  for (const reason of reasons) rejected.inc({ reason }, 0) // every reason present from the start, at 0
  const storeErrors = counter(
    'ingest_store_errors_total',
    'Readings not stored because the database failed (503, the client retries)',
  )
  const batchRequests = counter(
    'ingest_batch_requests_total',
    'Batches (POST /readings, application/x-ndjson) answered',
  )
  const batchReadings = counter('ingest_batch_readings_total', 'Readings that came in batches')
  const latency = new Histogram({
    name: 'ingest_request_duration_seconds',
    help: 'Time to answer POST /readings',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  const inFlight = new Gauge({
    name: 'ingest_requests_in_flight',
    help: 'POST /readings being handled',
    registers: [registry],
  })
  opts.metrics?.(registry)

  async function postReading(req: http.IncomingMessage): Promise<[number, object]> {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    if (type === BATCH_TYPE) return postBatch(req)
    if (type !== 'application/json')
      throw new HttpError(
        415,
        'unsupported_media_type',
        `Content-Type must be application/json (one reading) or ${BATCH_TYPE} (a batch), got ${JSON.stringify(req.headers['content-type'] ?? '')}`,
      )
    const length = Number(req.headers['content-length'] ?? 0)
    if (length > MAX_BODY_BYTES)
      throw new HttpError(413, 'too_large', `a reading is at most ${MAX_BODY_BYTES} bytes; this body is ${length}`)
    const body = await readBody(req, MAX_BODY_BYTES, 'a reading')

    const device = req.headers[DEVICE_HEADER]
    if (typeof device !== 'string' || device === '')
      throw new HttpError(
        401,
        'unauthorized',
        `header ${DEVICE_HEADER} is missing: name the device whose key signed the body`,
      )
    const key = DEVICE_ID.test(device) ? opts.keyOf(device) : undefined
    if (!key) throw new HttpError(401, 'unauthorized', `unknown device ${JSON.stringify(device)}`)
    const signature = req.headers[SIGNATURE_HEADER]
    if (typeof signature !== 'string')
      throw new HttpError(
        401,
        'unauthorized',
        `header ${SIGNATURE_HEADER} is missing: v1=<hex HMAC-SHA256 of the body>`,
      )
    if (!verify(key, body, signature))
      throw new HttpError(401, 'unauthorized', `the signature does not match the body under ${device}'s key`)

    const parsed = parseReading(body)
    if (!parsed.ok) throw new HttpError(400, 'malformed', parsed.error, parsed.field)
    const r = parsed.reading
    if (r.device !== device)
      throw new HttpError(401, 'unauthorized', `the body names device ${r.device} but was signed by ${device}`)

    const o = await storeReading(r)
    if (o.code >= 300) throw new HttpError(o.code, o.reason!, o.error!, o.field)
    return [o.code, { status: o.code === 201 ? 'stored' : 'duplicate', device: r.device, seq: r.seq }]
  }

  /** Store a reading that passed every check: the status it gets, and why when it is not stored. */
  async function storeReading(r: Reading): Promise<{ code: number; reason?: string; error?: string; field?: string }> {
    let result: InsertResult
    try {
      result = await opts.store.insert(r, digestOf(r), opts.backend)
    } catch (e) {
      storeErrors.inc()
      log(`store failed: ${(e as Error).message}`)
      return { code: 503, reason: 'store', error: 'the database is unavailable; retry later' }
    }
    if (result === 'invalid')
      return {
        code: 400,
        reason: 'malformed',
        error: "the database refused this reading's values (is the time a real date?)",
        field: 'time',
      }
    if (result === 'conflict')
      return {
        code: 409,
        reason: 'conflict',
        error: `device ${r.device} already sent a different reading with seq ${r.seq}`,
        field: 'seq',
      }
    if (result === 'duplicate') {
      duplicates.inc()
      return { code: 200 }
    }
    accepted.inc()
    return { code: 201 }
  }

  /**
   * A batch: one reading per line, each signed and answered on its own, in order, with
   * the status a single POST of it would get. Only when the database failed for every
   * line is the whole batch a 503 (so that nginx tries another backend).
   */
  async function postBatch(req: http.IncomingMessage): Promise<[number, object]> {
    const length = Number(req.headers['content-length'] ?? 0)
    if (length > MAX_BATCH_BYTES)
      throw new HttpError(413, 'too_large', `a batch is at most ${MAX_BATCH_BYTES} bytes; this body is ${length}`)
    const text = (await readBody(req, MAX_BATCH_BYTES, 'a batch')).toString()
    const lines = text.split('\n')
    if (lines[lines.length - 1] === '') lines.pop()
    if (lines.length === 0) throw new HttpError(400, 'malformed', 'the batch is empty: one signed reading per line')
    if (lines.length > MAX_BATCH_READINGS)
      throw new HttpError(
        413,
        'too_large',
        `a batch holds at most ${MAX_BATCH_READINGS} readings; this one has ${lines.length}`,
      )
    batchRequests.inc()
    batchReadings.inc(lines.length)
    const results = await Promise.all(lines.map((line, i) => batchLine(line, i + 1)))
    if (results.every((r) => r.code === 503))
      throw new HttpError(503, 'store', 'the database is unavailable; retry later')
    return [200, { results }]
  }

  type LineResult = {
    line: number
    device?: string
    seq?: number
    status: 'stored' | 'duplicate' | 'refused' | 'retry'
    code: number
    error?: string
    field?: string
  }

  async function batchLine(text: string, line: number): Promise<LineResult> {
    const refuse = (code: number, reason: string, error: string, field?: string, r?: Reading): LineResult => {
      rejected.inc({ reason })
      return {
        line,
        ...(r ? { device: r.device, seq: r.seq } : {}),
        status: code === 401 ? 'retry' : 'refused',
        code,
        error,
        ...(field ? { field } : {}),
      }
    }
    // The line holds a reading and its signature: a little more than a reading alone.
    if (Buffer.byteLength(text) > MAX_BODY_BYTES + 128)
      return refuse(413, 'too_large', `line ${line}: a reading is at most ${MAX_BODY_BYTES} bytes`)
    const p = parseBatchLine(text)
    if (!p.ok) return refuse(400, 'malformed', `line ${line}: ${p.error}`, p.field)
    const r = p.reading
    const key = opts.keyOf(r.device)
    if (!key)
      return refuse(401, 'unauthorized', `line ${line}: unknown device ${JSON.stringify(r.device)}`, undefined, r)
    if (!verify(key, Buffer.from(p.canonical), p.signature))
      return refuse(
        401,
        'unauthorized',
        `line ${line}: the signature does not match the reading under ${r.device}'s key`,
        undefined,
        r,
      )
    const o = await storeReading(r)
    if (o.code === 503) return { line, device: r.device, seq: r.seq, status: 'retry', code: 503, error: o.error }
    if (o.code >= 300) return refuse(o.code, o.reason!, `line ${line}: ${o.error}`, o.field, r)
    return { line, device: r.device, seq: r.seq, status: o.code === 201 ? 'stored' : 'duplicate', code: o.code }
  }

  async function route(
    req: http.IncomingMessage,
    url: URL,
  ): Promise<[number, object | string, Record<string, string>?]> {
    const only = (method: string) => {
      if (req.method !== method)
        throw new HttpError(405, 'method_not_allowed', `${url.pathname} accepts ${method} only`, undefined, {
          allow: method,
        })
    }
    if (url.pathname === '/readings') {
      only('POST')
      const done = latency.startTimer()
      inFlight.inc()
      try {
        return await postReading(req)
      } finally {
        inFlight.dec()
        done()
      }
    }
    if (url.pathname === '/healthz') {
      only('GET')
      const ok = await opts.store.healthy().catch((e: Error) => {
        log(`health check: the database is unreachable: ${e.message}`)
        return false
      })
      return [ok ? 200 : 503, { status: ok ? 'ok' : 'database unreachable', backend: opts.backend }]
    }
    if (url.pathname === '/metrics') {
      only('GET')
      return [200, await registry.metrics(), { 'content-type': registry.contentType }]
    }
    const m = /^\/devices\/([^/]+)\/readings$/.exec(url.pathname)
    if (m) {
      only('GET')
      const device = decodeURIComponent(m[1])
      if (!DEVICE_ID.test(device))
        throw new HttpError(400, 'malformed', `not a device id: ${JSON.stringify(device)}`, 'device')
      const after = Number(url.searchParams.get('after') ?? 0)
      const limit = Number(url.searchParams.get('limit') ?? 100)
      if (!Number.isSafeInteger(after) || after < 0)
        throw new HttpError(400, 'malformed', 'query "after" must be a sequence number (0 or more)', 'after')
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000)
        throw new HttpError(400, 'malformed', 'query "limit" must be from 1 to 1000', 'limit')
      try {
        return [200, { device, readings: await opts.store.list(device, after, limit) }]
      } catch (e) {
        log(`list failed: ${(e as Error).message}`)
        throw new HttpError(503, 'store', 'the database is unavailable; retry later')
      }
    }
    throw new HttpError(404, 'not_found', `no such resource: ${url.pathname}`)
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://ingest')
    route(req, url).then(
      ([status, body, headers]) => {
        send(res, status, body, headers)
      },
      (e: unknown) => {
        if (e instanceof HttpError) {
          if (url.pathname === '/readings' && e.reason !== 'store') rejected.inc({ reason: e.reason })
          if (e.status !== 503) log(`${req.method} ${url.pathname} ${e.status}: ${e.message}`)
          send(res, e.status, { error: e.message, ...(e.field ? { field: e.field } : {}) }, e.headers)
        } else {
          log(`internal error on ${req.method} ${url.pathname}: ${e instanceof Error ? e.stack : String(e)}`)
          send(res, 500, { error: 'internal error' })
        }
      },
    )
  }
  return { handler, registry, counters: { accepted, duplicates, rejected, storeErrors, batchRequests, batchReadings } }
}

function send(res: http.ServerResponse, status: number, body: object | string, headers: Record<string, string> = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body) + '\n'
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

/** The body, or a 413 as soon as it grows past the limit (without reading the rest). */
function readBody(req: http.IncomingMessage, limit: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) {
        reject(new HttpError(413, 'too_large', `${what} is at most ${limit} bytes`))
        req.removeAllListeners('data')
        req.resume()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}
