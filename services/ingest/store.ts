// Readings kept in PostgreSQL, once per device and sequence number (the table's
// primary key), whichever backend and however many times a reading arrives. Writes
// are batched (batcher.ts): one multi-row INSERT and one commit for all the readings
// that arrive while the previous commit is in flight; every reading is acknowledged
// only after the commit that holds it.
import pg from 'pg'
import type { Reading } from '../lib/reading.js'
import { Batcher, type BatcherOptions } from './batcher.js'
import type { InsertResult, Store, StoredReading } from './server.js'
import { readTlsFiles, type TlsFiles } from './tls.js'

/** tls: PostgreSQL over TLS, verify-full (the services CA, the CRL, the server's address in its certificate) with this backend's own certificate. */
export interface DbConfig {
  host: string
  port: number
  database: string
  user: string
  password: string
  tls?: TlsFiles
}

interface Row {
  r: Reading
  digest: string
  backend: string
}

const INSERT_BATCH = `INSERT INTO readings (device_id, seq, time, value, digest, backend)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::float8[], $5::text[], $6::text[])
  ON CONFLICT (device_id, seq) DO NOTHING
  RETURNING device_id, seq`
const DIGESTS = `SELECT device_id, seq, digest FROM readings
  WHERE (device_id, seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))`

/** Errors about the data itself (SQLSTATE classes 22 and 23): the reading, not the database, is wrong. */
const isDataError = (e: unknown) => /^2[23]/.test(String((e as { code?: string }).code ?? ''))

/**
 * Errors that say the connection, not the query, is wrong: the server gone (reset,
 * timeout, terminated), shutting down or starting (57P0x), a connection exception
 * (class 08), or a read-only server (25006: a demoted primary). After a database
 * failover every idle connection of the pool is one of these: each would cost a query
 * its timeout or its failure.
 */
export function isConnectionError(e: unknown): boolean {
  const code = String((e as { code?: string }).code ?? '')
  if (/^(08|57P0)/.test(code) || code === '25006') return true
  if (/^[0-9A-Z]{5}$/.test(code)) return false
  return /ECONNRESET|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|EPIPE|Connection terminated|Query read timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    `${code} ${(e as Error).message ?? ''}`,
  )
}

/** What the store needs of a pg.Pool (a fake one serves the unit tests). */
export type Queryable = Pick<pg.Pool, 'query' | 'end'>

export class PgStore implements Store {
  private pool: Queryable
  private settings = ''
  /** What the pool was made from (none for a pool given whole): a renewal makes the same again. */
  private made?: ReturnType<typeof PgStore.load>
  private renewedAt = 0
  readonly batcher: Batcher<Row, InsertResult>

  constructor(
    db: DbConfig | Queryable,
    private log: (line: string) => void,
    private poolSize = 8,
    batch: BatcherOptions = { maxBatch: 200, maxInFlight: 2 },
  ) {
    this.batcher = new Batcher((rows) => this.insertBatch(rows), batch)
    if ('query' in db) {
      this.pool = db
      return
    }
    this.pool = this.makePool(PgStore.load(db))
  }

  /** What a pool is made from: the settings and the TLS files' contents, read once; stamp tells a reload whether anything changed. */
  protected static load(db: DbConfig) {
    const files = db.tls && readTlsFiles(db.tls)
    return { db, files, stamp: JSON.stringify({ ...db, tls: files }) }
  }

  private makePool(load: ReturnType<typeof PgStore.load>): Queryable {
    this.made = load
    this.settings = load.stamp
    return this.newPool(load)
  }

  /** A pg.Pool from the settings (the unit tests give fakes that fail as a lost primary does). */
  protected newPool({ db, files }: ReturnType<typeof PgStore.load>): Queryable {
    const { tls: _paths, ...conn } = db
    // rejectUnauthorized and the default identity check (the address connected to, in
    // the server certificate's subjectAltName): libpq's sslmode=verify-full.
    const ssl = files ? { ...files, rejectUnauthorized: true, minVersion: 'TLSv1.3' as const } : undefined
    const pool = new pg.Pool({
      ...conn,
      ...(ssl ? { ssl } : {}),
      max: this.poolSize,
      // Short timeouts: a database that does not answer becomes a 503 in seconds,
      // and the client retries; nothing waits on a dead connection.
      connectionTimeoutMillis: 2000,
      idleTimeoutMillis: 30000,
      statement_timeout: 5000,
      query_timeout: 6000,
      application_name: 'lab-ingest',
    })
    // An idle connection dies when the database restarts: the pool drops it; say so.
    pool.on('error', (e) => this.log(`database connection lost: ${e.message}`))
    return pool
  }

  /**
   * New settings or TLS files (a reissued certificate, a new CRL): a new pool for new
   * queries; the old one ends once its connections are back (none in flight is cut).
   */
  reconfigure(db: DbConfig): boolean {
    const next = PgStore.load(db)
    if (next.stamp === this.settings) return false
    const old = this.pool
    this.pool = this.makePool(next)
    old.end().catch((e: Error) => this.log(`the previous database pool did not end cleanly: ${e.message}`))
    return true
  }

  /**
   * A connection error: every connection of the pool may be as dead (the primary moved
   * to another member, behind the same address). A new pool for the next queries, at
   * most once a second however many queries fail together; the old one ends once its
   * connections are back.
   */
  private renewAfter(e: unknown): void {
    if (!this.made || !isConnectionError(e) || Date.now() - this.renewedAt < 1000) return
    this.renewedAt = Date.now()
    this.log(`database connection failed (${(e as Error).message}): new connections for the next queries`)
    const old = this.pool
    this.pool = this.makePool(this.made)
    old.end().catch(() => undefined)
  }

  insert(r: Reading, digest: string, backend: string): Promise<InsertResult> {
    return this.batcher.submit({ r, digest, backend })
  }

  private async insertBatch(rows: Row[]): Promise<InsertResult[]> {
    let inserted: { device_id: string; seq: string }[]
    try {
      inserted = (
        await this.pool.query<{ device_id: string; seq: string }>({
          name: 'lab-insert-batch',
          text: INSERT_BATCH,
          values: [
            rows.map((x) => x.r.device),
            rows.map((x) => x.r.seq),
            rows.map((x) => x.r.time),
            rows.map((x) => x.r.value),
            rows.map((x) => x.digest),
            rows.map((x) => x.backend),
          ],
        })
      ).rows
    } catch (e) {
      // One reading the database refuses must not fail the others: one by one, then.
      if (rows.length > 1 && isDataError(e))
        return Promise.all(rows.map((x) => this.insertBatch([x]).then((r) => r[0])))
      if (isDataError(e)) {
        this.log(`the database refused ${rows[0].r.device} seq ${rows[0].r.seq}: ${(e as Error).message}`)
        return ['invalid']
      }
      this.renewAfter(e)
      throw e
    }
    const fresh = new Set(inserted.map((x) => `${x.device_id}/${x.seq}`))
    const results: (InsertResult | undefined)[] = rows.map((x) => {
      const key = `${x.r.device}/${x.r.seq}`
      if (!fresh.has(key)) return undefined
      fresh.delete(key) // the same reading twice in one batch: the second is a duplicate
      return 'stored'
    })
    const rest = rows.filter((_, i) => results[i] === undefined)
    if (rest.length) {
      const prior = await this.pool.query<{ device_id: string; seq: string; digest: string }>({
        name: 'lab-digests',
        text: DIGESTS,
        values: [rest.map((x) => x.r.device), rest.map((x) => x.r.seq)],
      })
      const digests = new Map(prior.rows.map((x) => [`${x.device_id}/${x.seq}`, x.digest]))
      rows.forEach((x, i) => {
        if (results[i] === undefined)
          results[i] = digests.get(`${x.r.device}/${x.r.seq}`) === x.digest ? 'duplicate' : 'conflict'
      })
    }
    return results as InsertResult[]
  }

  async list(device: string, after: number, limit: number): Promise<StoredReading[]> {
    const res = await this.pool.query<{ seq: string; time: Date; value: number; backend: string; received_at: Date }>(
      'SELECT seq, time, value, backend, received_at FROM readings WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [device, after, limit],
    )
    return res.rows.map((row) => ({
      device,
      seq: Number(row.seq),
      time: row.time.toISOString(),
      value: row.value,
      backend: row.backend,
      received: row.received_at.toISOString(),
    }))
  }

  /** The database answers; a dead connection the pool still held is no answer: once more on new ones. */
  async healthy(): Promise<boolean> {
    const ask = (pool: Queryable) => pool.query('SELECT 1 FROM readings LIMIT 0')
    // The pool asked is kept: a failed insert may have renewed it meanwhile (the renewal
    // is then rate-limited here), and the new one deserves the second question.
    const asked = this.pool
    try {
      await ask(asked)
    } catch (e) {
      this.renewAfter(e)
      if (this.pool === asked) throw e
      await ask(this.pool)
    }
    return true
  }

  close() {
    return this.pool.end()
  }
}
