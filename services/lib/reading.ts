// A reading, as a device sends it, and how it is signed. Shared by the ingest server,
// the IoT client and the load generator, so there is one definition of the protocol.
//
// Protocol (services/README.md): POST /readings, Content-Type: application/json,
// body {"device","seq","time","value"}, header X-Device-Id: the signing device, and
// X-Signature: v1=<hex HMAC-SHA256 of the exact body bytes under the device's key>.
// The signature covers the bytes as sent, so no canonical JSON form is needed, and a
// replayed body is harmless: the same device and sequence number are stored once.
//
// A batch (a backlog draining): POST /readings, Content-Type: application/x-ndjson,
// one reading per line, each with its own "signature" field over its canonical body
// (encodeReading: the four fields in order, which is the exact body a device sends
// alone), so readings of many devices travel together and each is checked on its own.
import { createHmac, timingSafeEqual } from 'node:crypto'

export interface Reading {
  device: string
  seq: number
  time: string
  value: number
}

export const DEVICE_HEADER = 'x-device-id'
export const SIGNATURE_HEADER = 'x-signature'
export const SIGNATURE_SCHEME = 'v1'
/** Readings are a few dozen bytes; anything bigger than this is refused (413). */
export const MAX_BODY_BYTES = 1024
export const BATCH_TYPE = 'application/x-ndjson'
/** A batch: at most this many readings, and this many bytes (nginx allows as much). */
export const MAX_BATCH_READINGS = 1000
export const MAX_BATCH_BYTES = 512 * 1024

export const DEVICE_ID = /^[a-z0-9][a-z0-9-]{0,62}$/
// RFC 3339 in UTC, as Date.prototype.toISOString writes it (milliseconds optional).
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/
const FIELDS = ['device', 'seq', 'time', 'value'] as const

export function sign(key: Buffer, body: string | Buffer): string {
  return `${SIGNATURE_SCHEME}=${createHmac('sha256', key).update(body).digest('hex')}`
}

/** Constant-time check of an X-Signature header against the body. */
export function verify(key: Buffer, body: Buffer, header: string | undefined): boolean {
  if (!header) return false
  const want = Buffer.from(sign(key, body))
  const got = Buffer.from(header.trim())
  return got.length === want.length && timingSafeEqual(got, want)
}

export type Parsed = { ok: true; reading: Reading } | { ok: false; field?: string; error: string }

/** Strict: exactly the four fields, each of its type and range; the error names the field. */
export function parseReading(body: Buffer | string): Parsed {
  let raw: unknown
  try {
    raw = JSON.parse(body.toString())
  } catch (e) {
    return { ok: false, error: `the body is not valid JSON: ${(e as Error).message}` }
  }
  return validateReading(raw)
}

/** The four fields, each of its type and range, and nothing else. */
function validateReading(raw: unknown): Parsed {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return { ok: false, error: 'the body must be a JSON object {device, seq, time, value}' }
  const r = raw as Record<string, unknown>
  for (const key of Object.keys(r)) {
    if (!(FIELDS as readonly string[]).includes(key))
      return { ok: false, field: key, error: `unknown field "${key}": a reading has only device, seq, time and value` }
  }
  for (const f of FIELDS) if (!(f in r)) return { ok: false, field: f, error: `field "${f}" is missing` }
  if (typeof r.device !== 'string' || !DEVICE_ID.test(r.device))
    return {
      ok: false,
      field: 'device',
      error: 'field "device" must be a device id: lower-case letters, digits and dashes, at most 63',
    }
  if (typeof r.seq !== 'number' || !Number.isSafeInteger(r.seq) || r.seq < 1)
    return { ok: false, field: 'seq', error: 'field "seq" must be an integer from 1 to 2^53-1' }
  if (typeof r.time !== 'string' || !isRealTime(r.time))
    return {
      ok: false,
      field: 'time',
      error: 'field "time" must be a real RFC 3339 UTC time from 1970 on, such as 2026-01-31T12:00:00.000Z',
    }
  if (typeof r.value !== 'number' || !Number.isFinite(r.value))
    return { ok: false, field: 'value', error: 'field "value" must be a finite number' }
  return { ok: true, reading: { device: r.device, seq: r.seq, time: r.time, value: r.value } }
}

/** RFC 3339 UTC, and a date that exists: Date.parse alone would take 2026-02-30 as March 2. */
function isRealTime(time: string): boolean {
  if (!TIME.test(time)) return false
  const ms = Date.parse(time)
  return Number.isFinite(ms) && ms >= 0 && new Date(ms).toISOString().slice(0, 19) === time.slice(0, 19)
}

/** One line of a batch: the reading's body with its signature as a fifth field. */
export function batchLine(body: string, signature: string): string {
  if (!body.endsWith('}')) throw new Error('batchLine: not an encoded reading')
  return `${body.slice(0, -1)},"signature":${JSON.stringify(signature)}}`
}

export type ParsedLine =
  { ok: true; reading: Reading; signature: string; canonical: string } | { ok: false; field?: string; error: string }

/** A batch line: a reading plus "signature"; canonical is the body the signature covers. */
export function parseBatchLine(line: string): ParsedLine {
  let raw: unknown
  try {
    raw = JSON.parse(line)
  } catch (e) {
    return { ok: false, error: `the line is not valid JSON: ${(e as Error).message}` }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return { ok: false, error: 'a line must be a JSON object {device, seq, time, value, signature}' }
  const { signature, ...rest } = raw as Record<string, unknown>
  if (typeof signature !== 'string')
    return {
      ok: false,
      field: 'signature',
      error: `field "signature" is missing: ${SIGNATURE_SCHEME}=<hex HMAC-SHA256 of the reading's body>`,
    }
  const parsed = validateReading(rest)
  if (!parsed.ok) return parsed
  return { ok: true, reading: parsed.reading, signature, canonical: encodeReading(parsed.reading) }
}

/** The body a device sends: fixed field order, so the same reading is the same bytes. */
export function encodeReading(r: Reading): string {
  return JSON.stringify({ device: r.device, seq: r.seq, time: r.time, value: r.value })
}

/** Per-device keys are derived from one master secret: HMAC-SHA256(master, "device:" + id). */
export function deriveDeviceKey(master: Buffer, device: string): Buffer {
  return createHmac('sha256', master).update(`device:${device}`).digest()
}
