// Sends the outbox's readings until the server acknowledges each one: fresh readings
// first, then the backlog, in batches (application/x-ndjson, each line answered on its
// own) or one per request (batch 1, or a server that does not take batches). A reading
// is acknowledged by 201 (stored) or 200 (already stored); it is refused for good only
// when the server says the reading itself is wrong (400, 409, 413, 415), and then kept
// aside, not dropped. Everything else (no route, timeout, 5xx, 401 while new keys
// reach the servers) is retried, with a shared exponential backoff so that a dead path
// is not hammered, and the outbox keeps the reading meanwhile.
import http from 'node:http'
import https from 'node:https'
import { BATCH_TYPE, DEVICE_HEADER, SIGNATURE_HEADER, batchLine, sign } from '../lib/reading.js'
import type { Entry } from './outbox.js'

export const PERMANENT = new Set([400, 409, 413, 415])

/** What the options leave unsaid (one place, so that a test can shorten them). */
export const DEFAULTS = { timeoutMs: 5000, batchTimeoutMs: 10_000, maxBackoffMs: 5000 }

/** The backoff after one more failure: doubled, from 100 ms, at most `maxMs`. */
export const nextBackoff = (backoffMs: number, maxMs: number) => Math.min(maxMs, Math.max(100, backoffMs * 2))

/**
 * The wait before the next request: between half and all of the backoff, so that the
 * devices that failed together (a tunnel down) do not all come back in the same instant.
 */
export const jitter = (backoffMs: number, random = Math.random()) => backoffMs * (0.5 + random / 2)

/** Where the readings come from: the outbox (take fresh then backlog; give back what failed). */
export interface Source {
  take(max: number): Entry[]
  retry(entries: Entry[]): void
}

export interface SenderOptions {
  url: string
  keyOf: (device: string) => Buffer
  source: Source
  concurrency: number
  /** Readings per request: 1 sends each alone (application/json). */
  batch: number
  timeoutMs?: number
  maxBackoffMs?: number
  onAck: (e: Entry, status: number, upstream?: string) => void
  onReject: (e: Entry, status: number, reason: string) => void
  onRetry?: (entries: Entry[], why: string) => void
  log?: (line: string) => void
}

export interface Answer {
  status: number
  body: string
  upstream?: string
}

function request(
  url: URL,
  agent: http.Agent,
  headers: Record<string, string | number>,
  body: string,
  timeoutMs: number,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // https: the load generator inside the cloud (a backend's TLS port, with the proxy's certificate).
    const req = (url.protocol === 'https:' ? https : http).request(
      url,
      { method: 'POST', agent, timeout: timeoutMs, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            upstream: res.headers['x-upstream'] as string | undefined,
          }),
        )
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** One signed POST of a reading's exact bytes. */
export function post(
  url: URL,
  agent: http.Agent,
  e: { device: string; body: string },
  key: Buffer,
  timeoutMs: number,
): Promise<Answer> {
  return request(
    url,
    agent,
    { 'content-type': 'application/json', [DEVICE_HEADER]: e.device, [SIGNATURE_HEADER]: sign(key, e.body) },
    e.body,
    timeoutMs,
  )
}

export interface LineAnswer {
  status: string
  code: number
  error?: string
  device?: string
  seq?: number
}

/** One POST of many readings, each line signed by its own device; the answer has one result per line, in order. */
export async function postBatch(
  url: URL,
  agent: http.Agent,
  entries: { device: string; body: string }[],
  keyOf: (device: string) => Buffer,
  timeoutMs: number,
): Promise<{ answer: Answer; results?: LineAnswer[] }> {
  const body = entries.map((e) => batchLine(e.body, sign(keyOf(e.device), e.body)) + '\n').join('')
  const answer = await request(url, agent, { 'content-type': BATCH_TYPE }, body, timeoutMs)
  if (answer.status !== 200) return { answer }
  let results: LineAnswer[] | undefined
  try {
    results = (JSON.parse(answer.body) as { results: LineAnswer[] }).results
  } catch {
    /* not JSON: no results */
  }
  return { answer, results: Array.isArray(results) && results.length === entries.length ? results : undefined }
}

export class Sender {
  private wake: (() => void) | undefined
  private stopped = false
  private backoff = 0
  private agent: http.Agent
  private url: URL
  private batch: number
  lastError: string | undefined
  retries = 0
  /** The wait before the next request (0 while deliveries succeed). */
  get backoffMs() {
    return this.backoff
  }

  constructor(private opts: SenderOptions) {
    this.url = new URL(opts.url)
    // An https URL needs an https agent (an http one makes every request throw).
    this.agent = new (this.url.protocol === 'https:' ? https : http).Agent({
      keepAlive: true,
      maxSockets: opts.concurrency,
    })
    this.batch = Math.max(1, opts.batch)
  }

  /** There are readings to send. */
  notify() {
    this.wake?.()
  }

  start() {
    return Promise.all(Array.from({ length: this.opts.concurrency }, () => this.worker()))
  }

  stop() {
    this.stopped = true
    this.wake?.()
    this.agent.destroy()
  }

  private async worker() {
    while (!this.stopped) {
      if (this.backoff > 0) await sleep(jitter(this.backoff))
      if (this.stopped) return
      const entries = this.opts.source.take(this.batch)
      if (entries.length === 0) {
        await new Promise<void>((resolve) => {
          const prev = this.wake
          this.wake = () => {
            this.wake = undefined
            prev?.()
            resolve()
          }
        })
        continue
      }
      let failed: Entry[] = []
      let why = ''
      try {
        if (this.batch === 1) {
          const e = entries[0]
          const a = await post(
            this.url,
            this.agent,
            e,
            this.opts.keyOf(e.device),
            this.opts.timeoutMs ?? DEFAULTS.timeoutMs,
          )
          why = this.settle(e, a.status, a.body, a.upstream) ? '' : `HTTP ${a.status} ${a.body.trim().slice(0, 200)}`
          if (why) failed = [e]
        } else {
          const { answer, results } = await postBatch(
            this.url,
            this.agent,
            entries,
            this.opts.keyOf,
            this.opts.timeoutMs ?? DEFAULTS.batchTimeoutMs,
          )
          if (answer.status === 415 || answer.status === 404) {
            // A server that takes no batches: one reading per request from now on.
            this.opts.log?.(
              `the server refused a batch (HTTP ${answer.status}): sending one reading per request from now on`,
            )
            this.batch = 1
            failed = entries
          } else if (!results) {
            failed = entries
            why = `HTTP ${answer.status} ${answer.body.trim().slice(0, 200)}`
          } else {
            entries.forEach((e, i) => {
              // A line answered by something that is not a result (null) is retried, like a 5xx.
              const r: Partial<LineAnswer> = results[i] ?? {}
              if (!this.settle(e, Number(r.code ?? 0), String(r.error ?? r.status), answer.upstream)) {
                failed.push(e)
                why = `HTTP ${r.code ?? 0}${r.error ? ` ${r.error}` : ''} (in a batch)`
              }
            })
          }
        }
      } catch (err) {
        failed = entries
        why = (err as Error).message
      }
      if (failed.length === 0) {
        this.backoff = 0
        this.lastError = undefined
        continue
      }
      this.opts.source.retry(failed)
      if (!why) continue // only the protocol changed
      this.retries += failed.length
      this.lastError = why
      this.opts.onRetry?.(failed, why)
      this.backoff = nextBackoff(this.backoff, this.opts.maxBackoffMs ?? DEFAULTS.maxBackoffMs)
    }
  }

  /** Acknowledge or refuse a reading by the status it got; false: retry it. */
  private settle(e: Entry, status: number, reason: string, upstream?: string): boolean {
    if (status === 200 || status === 201) {
      this.opts.onAck(e, status, upstream)
      return true
    }
    if (PERMANENT.has(status)) {
      this.opts.onReject(e, status, reason.trim())
      return true
    }
    return false
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
