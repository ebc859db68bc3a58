// The PostgreSQL store's batching logic against an in-memory stand-in for the pool
// that behaves like the SQL it is sent (INSERT ... ON CONFLICT DO NOTHING RETURNING,
// then the digests of what was already there): readings that arrive together go in one
// statement, each gets its own answer (stored, duplicate, conflict), a reading the
// database refuses for its data fails alone, and a lost connection fails the batch.
import t from 'tap'
import { digestOf } from '../../services/ingest/server.js'
import { PgStore, isConnectionError, type Queryable } from '../../services/ingest/store.js'
import type { Reading } from '../../services/lib/reading.js'

class FakePool {
  rows = new Map<string, string>()
  statements: { name: string; size: number }[] = []
  down = false
  async query(q: { name: string; values: unknown[][] }) {
    if (this.down)
      throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })
    const [devices, seqs] = q.values as [string[], number[]]
    this.statements.push({ name: q.name, size: devices.length })
    if (q.name === 'lab-insert-batch') {
      const [, , times, , digests] = q.values as [string[], number[], string[], number[], string[]]
      if (times.some((x) => x.startsWith('2026-02-30')))
        throw Object.assign(new Error('date/time field value out of range'), { code: '22008' })
      const inserted = []
      for (let i = 0; i < devices.length; i++) {
        const key = `${devices[i]}/${seqs[i]}`
        if (this.rows.has(key)) continue // ON CONFLICT DO NOTHING
        this.rows.set(key, digests[i])
        inserted.push({ device_id: devices[i], seq: String(seqs[i]) })
      }
      return { rows: inserted }
    }
    return {
      rows: devices
        .map((d, i) => ({ device_id: d, seq: String(seqs[i]), digest: this.rows.get(`${d}/${seqs[i]}`) }))
        .filter((r) => r.digest),
    }
  }
  async end() {}
}

const reading = (seq: number, value = 1, time = '2026-11-25T12:00:00.000Z'): Reading => ({
  device: 'd1',
  seq,
  time,
  value,
})
const insert = (store: PgStore, r: Reading) => store.insert(r, digestOf(r), 'b1')

t.test('together in one statement, each with its own answer', async (t) => {
  const pool = new FakePool()
  const store = new PgStore(pool as unknown as Queryable, () => {})
  await insert(store, reading(1))
  const results = await Promise.all([
    insert(store, reading(2)),
    insert(store, reading(3)),
    insert(store, reading(2)),
    insert(store, reading(1)),
    insert(store, reading(1, 99)),
  ])
  t.same(results, ['stored', 'stored', 'duplicate', 'duplicate', 'conflict'])
  t.same(
    pool.statements.filter((s) => s.name === 'lab-insert-batch').map((s) => s.size),
    [1, 1, 4],
    'each at once while a slot is free (2 in flight), then the other four in one INSERT',
  )
  t.same([...pool.rows.keys()].sort(), ['d1/1', 'd1/2', 'd1/3'], 'each reading once')
})

t.test('the same reading twice in one batch: stored once, the second copy a duplicate', async (t) => {
  const pool = new FakePool()
  const store = new PgStore(pool as unknown as Queryable, () => {})
  const results = await Promise.all([
    insert(store, reading(1)),
    insert(store, reading(2)),
    insert(store, reading(3)),
    insert(store, reading(3)),
  ])
  t.same(
    pool.statements.filter((s) => s.name === 'lab-insert-batch').map((s) => s.size),
    [1, 1, 2],
    'both copies of seq 3 in one INSERT',
  )
  t.same(results, ['stored', 'stored', 'stored', 'duplicate'])
  t.equal(pool.rows.size, 3)
})

t.test('a reading the database refuses fails alone; the others in its batch are stored', async (t) => {
  const logs: string[] = []
  const pool = new FakePool()
  const store = new PgStore(pool as unknown as Queryable, (l) => logs.push(l))
  const results = await Promise.all([
    insert(store, reading(1)),
    insert(store, reading(2)),
    insert(store, reading(3, 1, '2026-02-30T12:00:00.000Z')),
    insert(store, reading(4)),
  ])
  t.same(results, ['stored', 'stored', 'invalid', 'stored'])
  t.same([...pool.rows.keys()].sort(), ['d1/1', 'd1/2', 'd1/4'])
  t.match(logs.join('\n'), /refused d1 seq 3: date\/time field value out of range/)
})

t.test('a lost connection fails the batch (503 to the callers, who retry)', async (t) => {
  const pool = new FakePool()
  const store = new PgStore(pool as unknown as Queryable, () => {})
  pool.down = true
  await t.rejects(insert(store, reading(1)), /administrator command/)
  pool.down = false
  t.equal(await insert(store, reading(1)), 'stored', 'and the next one goes through')
})

t.test('which errors say the connection is wrong, and which the query', async (t) => {
  const err = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {})
  for (const e of [
    err('terminating connection due to administrator command', '57P01'),
    err('the database system is starting up', '57P03'),
    err('connection failure', '08006'),
    err('cannot execute INSERT in a read-only transaction', '25006'),
    err('read ECONNRESET', 'ECONNRESET'),
    err('connect ECONNREFUSED 10.20.0.30:5432', 'ECONNREFUSED'),
    err('Query read timeout'),
    err('Connection terminated unexpectedly'),
    err('timeout exceeded when trying to connect'),
  ])
    t.ok(isConnectionError(e), `connection: ${e.message}`)
  for (const e of [
    err('date/time field value out of range', '22008'),
    err('duplicate key value violates unique constraint', '23505'),
    err('canceling statement due to statement timeout', '57014'),
    err('relation "readings" does not exist', '42P01'),
  ])
    t.notOk(isConnectionError(e), `the query: ${e.message}`)
})

t.test(
  'a connection error renews the pool (once a second at most); the health check asks once more on new connections',
  async (t) => {
    // A real pg.Pool toward a port nothing listens on: every connection is refused.
    const logs: string[] = []
    const store = new PgStore({ host: '127.0.0.1', port: 1, database: 'x', user: 'x', password: 'x' }, (l) =>
      logs.push(l),
    )
    t.teardown(() => store.close().catch(() => undefined))
    await t.rejects(store.healthy(), /ECONNREFUSED/, 'still refused on new connections: unhealthy')
    t.equal(logs.filter((l) => /new connections for the next queries/.test(l)).length, 1, 'one renewal')
    await t.rejects(insert(store, reading(1)), /ECONNREFUSED/)
    t.equal(
      logs.filter((l) => /new connections/.test(l)).length,
      1,
      'a failure within the second renews nothing more (many queries fail together)',
    )
    const pool = new FakePool()
    const given = new PgStore(pool as unknown as Queryable, (l) => logs.push(l))
    pool.down = true
    await t.rejects(given.healthy(), /administrator command/, 'a pool given whole cannot be renewed: the error stands')
  },
)

t.test(
  'the health check asks the pool an insert renewed while its own question waited on a dead connection',
  async (t) => {
    // After a failover: the health check's query waits on a connection to the lost
    // primary; an insert fails meanwhile and renews the pool; the health check's query
    // then fails too, within the second (no second renewal). The new pool answers.
    const reset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
    let release = (): void => undefined
    const waiting = new Promise<void>((r) => (release = r))
    const lost = {
      query: async (q: string | { name: string }) => {
        if (typeof q === 'string') await waiting // the health check's question hangs, then fails
        throw reset()
      },
      end: async () => undefined,
    }
    const asked: string[] = []
    const fresh = {
      query: async (q: string) => (asked.push(q), { rows: [] }),
      end: async () => undefined,
    }
    const pools: Queryable[] = [lost as unknown as Queryable, fresh as unknown as Queryable]
    class Store extends PgStore {
      protected override newPool(): Queryable {
        return pools.shift()!
      }
    }
    const logs: string[] = []
    const store = new Store({ host: '10.20.0.30', port: 5432, database: 'x', user: 'x', password: 'x' }, (l) =>
      logs.push(l),
    )
    const health = store.healthy()
    await t.rejects(insert(store, reading(1)), /ECONNRESET/, 'the insert on the lost primary fails')
    release()
    t.equal(await health, true, 'healthy: the renewed pool answered the second question')
    t.equal(logs.filter((l) => /new connections/.test(l)).length, 1, 'one renewal, the insert’s')
    t.same(asked, ['SELECT 1 FROM readings LIMIT 0'], 'asked on the pool the insert made')
  },
)
