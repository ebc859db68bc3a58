// Sends the outbox's readings until the server acknowledges each one. A reading is
// acknowledged by 201 (stored) or 200 (already stored); it is refused for good only
// when the server says the reading itself is wrong (400, 409, 413, 415), and then kept
// aside, not dropped. Everything else (no route, timeout, 5xx, 401 while new keys
// reach the servers) is retried, with a shared exponential backoff so that a dead path
// is not hammered, and the outbox keeps the reading meanwhile.
import http from 'node:http'
import { DEVICE_HEADER, SIGNATURE_HEADER, sign } from '../lib/reading.js'
import type { Entry } from './outbox.js'

export const PERMANENT = new Set([400, 409, 413, 415])

export interface SenderOptions {
  url: string
  keyOf: (device: string) => Buffer
  concurrency: number
  timeoutMs?: number
  maxBackoffMs?: number
  onAck: (e: Entry, status: number, upstream?: string) => void
  onReject: (e: Entry, status: number, reason: string) => void
  onRetry?: (e: Entry, why: string) => void
}

export interface Answer { status: number; body: string; upstream?: string }

/** One signed POST of a reading's exact bytes. */
export function post(url: URL, agent: http.Agent, e: { device: string; body: string }, key: Buffer, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', agent, timeout: timeoutMs,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(e.body),
        [DEVICE_HEADER]: e.device,
        [SIGNATURE_HEADER]: sign(key, e.body),
      },
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), upstream: res.headers['x-upstream'] as string | undefined }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end(e.body)
  })
}

export class Sender {
  private queue: Entry[] = []
  private wake: (() => void) | undefined
  private stopped = false
  private backoffMs = 0
  private agent: http.Agent
  private url: URL
  lastError: string | undefined
  retries = 0

  constructor(private opts: SenderOptions) {
    this.url = new URL(opts.url)
    this.agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency })
  }

  push(entries: Entry[]) {
    this.queue.push(...entries)
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
      const e = this.queue.shift()
      if (!e) {
        await new Promise<void>((resolve) => {
          const prev = this.wake
          this.wake = () => { this.wake = undefined; prev?.(); resolve() }
        })
        continue
      }
      if (this.backoffMs > 0) await sleep(this.backoffMs * (0.5 + Math.random() / 2))
      if (this.stopped) { this.queue.unshift(e); return }
      let why: string
      try {
        const a = await post(this.url, this.agent, e, this.opts.keyOf(e.device), this.opts.timeoutMs ?? 5000)
        if (a.status === 200 || a.status === 201) {
          this.backoffMs = 0
          this.lastError = undefined
          this.opts.onAck(e, a.status, a.upstream)
          continue
        }
        if (PERMANENT.has(a.status)) {
          this.opts.onReject(e, a.status, a.body.trim())
          continue
        }
        why = `HTTP ${a.status} ${a.body.trim().slice(0, 200)}`
      } catch (err) {
        why = (err as Error).message
      }
      this.retries++
      this.lastError = why
      this.opts.onRetry?.(e, why)
      this.backoffMs = Math.min(this.opts.maxBackoffMs ?? 5000, Math.max(100, this.backoffMs * 2))
      this.queue.unshift(e)
    }
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
