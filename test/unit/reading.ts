// The reading protocol's own rules (services/lib/reading.ts), case by case: what the
// ingest service accepts, and for what it refuses, the field and the sentence a device's
// developer reads. StrykerJS found these rules held only loosely by the service tests:
// the device id's and the time's anchors, the type checks, the first second of 1970.
import { createHmac } from 'node:crypto'
import t from 'tap'
import {
  BATCH_TYPE,
  batchLine,
  deriveDeviceKey,
  encodeReading,
  parseBatchLine,
  parseReading,
  sign,
  SIGNATURE_HEADER,
  verify,
} from '../../services/lib/reading.js'

const good = { device: 'bench-0001', seq: 1, time: '2026-01-31T12:00:00.000Z', value: 21.5 }
const body = (o: Record<string, unknown>) => JSON.stringify(o)

const DEVICE = 'field "device" must be a device id: lower-case letters, digits and dashes, at most 63'
const SEQ = 'field "seq" must be an integer from 1 to 2^53-1'
const TIME = 'field "time" must be a real RFC 3339 UTC time from 1970 on, such as 2026-01-31T12:00:00.000Z'
const VALUE = 'field "value" must be a finite number'
const OBJECT = 'the body must be a JSON object {device, seq, time, value}'

t.test('a well-formed reading is accepted as sent', async (t) => {
  t.same(parseReading(body(good)), { ok: true, reading: good })
  t.same(parseReading(Buffer.from(body(good))), { ok: true, reading: good }, 'from the bytes as received')
  for (const [field, value] of [
    ['device', '0'],
    ['device', 'a'.repeat(63)],
    ['device', 'a-'],
    ['seq', Number.MAX_SAFE_INTEGER],
    ['time', '1970-01-01T00:00:00Z'],
    ['time', '2024-02-29T23:59:59.123456Z'],
    ['value', -0.5],
    ['value', 0],
  ] as const) {
    t.ok(
      parseReading(body({ ...good, [field]: value })).ok,
      `${field} ${JSON.stringify(value)} (the edge of what is allowed)`,
    )
  }
})

t.test('each field out of its type or range is refused, naming the field', async (t) => {
  const cases: [string, unknown, string][] = [
    ['device', 42, DEVICE],
    ['device', '', DEVICE],
    ['device', 'Bench-0001', DEVICE],
    ['device', '-bench', DEVICE],
    ['device', 'bench 0001', DEVICE],
    ['device', 'X-bench', DEVICE],
    ['device', 'bench-0001 X', DEVICE],
    ['device', 'bench\n', DEVICE],
    ['device', 'a'.repeat(64), DEVICE],
    ['seq', '1', SEQ],
    ['seq', 0, SEQ],
    ['seq', -1, SEQ],
    ['seq', 1.5, SEQ],
    ['seq', 2 ** 53, SEQ],
    ['seq', null, SEQ],
    ['time', 1769860800000, TIME],
    ['time', '2026-01-31 12:00:00Z', TIME],
    ['time', '2026-01-31T12:00:00+01:00', TIME],
    ['time', ' 2026-01-31T12:00:00Z', TIME],
    ['time', '2026-01-31T12:00:00Z ', TIME],
    ['time', 'x2026-01-31T12:00:00Z', TIME],
    ['time', '2026-01-31T12:00:00Zx', TIME],
    ['time', '2026-02-30T12:00:00Z', TIME],
    ['time', '2026-01-31T24:00:00Z', TIME],
    ['time', '1969-12-31T23:59:59Z', TIME],
    ['time', '2026-01-31T12:00:00.1234567Z', TIME],
    ['value', '21.5', VALUE],
    ['value', null, VALUE],
    ['value', true, VALUE],
  ]
  for (const [field, value, error] of cases) {
    t.same(
      parseReading(body({ ...good, [field]: value })),
      { ok: false, field, error },
      `${field} ${JSON.stringify(value)}`,
    )
  }
  t.same(
    parseReading('{"device":"bench-0001","seq":1,"time":"2026-01-31T12:00:00Z","value":1e999}'),
    { ok: false, field: 'value', error: VALUE },
    'a value that overflows to Infinity',
  )
})

t.test('the shape: an object with exactly the four fields', async (t) => {
  for (const raw of ['null', '[]', '[1,2]', '"a reading"', '42', 'true']) {
    t.same(parseReading(raw), { ok: false, error: OBJECT }, raw)
  }
  t.same(parseReading(body({ ...good, extra: 1 })), {
    ok: false,
    field: 'extra',
    error: 'unknown field "extra": a reading has only device, seq, time and value',
  })
  for (const f of ['device', 'seq', 'time', 'value']) {
    const { [f as keyof typeof good]: _, ...rest } = good
    t.same(parseReading(body(rest)), { ok: false, field: f, error: `field "${f}" is missing` }, `without ${f}`)
  }
  const bad = parseReading('{"device":')
  t.equal(bad.ok, false)
  t.match(!bad.ok && bad.error, /^the body is not valid JSON: /, "not JSON: said so, with the parser's reason")
})

t.test('signatures: HMAC-SHA256 of the exact bytes, scheme v1, compared whole', async (t) => {
  const key = Buffer.from('k'.repeat(32))
  const b = Buffer.from(body(good))
  const s = sign(key, b)
  t.equal(s, `v1=${createHmac('sha256', key).update(b).digest('hex')}`, 'v1=<hex>')
  t.ok(verify(key, b, s))
  t.ok(verify(key, b, ` ${s}\t`), 'whitespace HTTP allows around a header value')
  t.notOk(verify(key, b, undefined), 'no header')
  t.notOk(verify(key, b, ''), 'an empty header')
  t.notOk(verify(key, b, s.slice(0, -1)), 'one character short')
  t.notOk(verify(key, b, `${s}0`), 'one character long')
  t.notOk(verify(key, b, s.replace(/^v1/, 'v2')), 'another scheme')
  t.notOk(verify(key, Buffer.from(body({ ...good, value: 21.6 })), s), 'another body')
  t.equal(SIGNATURE_HEADER, 'x-signature', 'the header the README names (lower-cased, as Node gives headers)')
})

t.test('a device\'s key is HMAC-SHA256(master, "device:" + id): the same on the client and the server', async (t) => {
  // Known answer, from openssl: printf 'device:bench-0001' | openssl dgst -sha256 -hmac master-secret
  t.equal(
    deriveDeviceKey(Buffer.from('master-secret'), 'bench-0001').toString('hex'),
    'a1a5fe8e1d3bf5e2226d666c9f9d7efc1aea43480128220dbb77e64f4e16b575',
  )
  t.not(
    deriveDeviceKey(Buffer.from('master-secret'), 'bench-0002').toString('hex'),
    deriveDeviceKey(Buffer.from('master-secret'), 'bench-0001').toString('hex'),
    'one key per device',
  )
})

t.test('batch lines: the reading, its signature as a fifth field, the canonical body recovered', async (t) => {
  t.equal(BATCH_TYPE, 'application/x-ndjson')
  const canonical = encodeReading(good)
  t.equal(
    canonical,
    '{"device":"bench-0001","seq":1,"time":"2026-01-31T12:00:00.000Z","value":21.5}',
    'fixed field order',
  )
  const line = batchLine(canonical, 'v1=ab')
  t.equal(line, '{"device":"bench-0001","seq":1,"time":"2026-01-31T12:00:00.000Z","value":21.5,"signature":"v1=ab"}')
  t.same(parseBatchLine(line), { ok: true, reading: good, signature: 'v1=ab', canonical })
  t.throws(() => batchLine('[1]', 'v1=ab'), { message: 'batchLine: not an encoded reading' })
  t.same(parseBatchLine(canonical), {
    ok: false,
    field: 'signature',
    error: 'field "signature" is missing: v1=<hex HMAC-SHA256 of the reading\'s body>',
  })
  t.same(
    parseBatchLine(batchLine(encodeReading({ ...good, seq: 0 }), 'v1=ab')),
    { ok: false, field: 'seq', error: SEQ },
    'each reading checked as one sent alone',
  )
  for (const raw of ['null', '[]', '"x"', '7'])
    t.same(
      parseBatchLine(raw),
      { ok: false, error: 'a line must be a JSON object {device, seq, time, value, signature}' },
      raw,
    )
  const bad = parseBatchLine('{')
  t.match(!bad.ok && bad.error, /^the line is not valid JSON: /)
})
