// Readings kept in PostgreSQL, once per device and sequence number (the table's
// primary key), whichever backend and however many times a reading arrives.
import pg from 'pg'
import type { Reading } from '../lib/reading.js'
import type { InsertResult, Store, StoredReading } from './server.js'

export interface DbConfig { host: string; port: number; database: string; user: string; password: string }

export class PgStore implements Store {
  private pool: pg.Pool
  constructor(db: DbConfig, log: (line: string) => void, poolSize = 8) {
    this.pool = new pg.Pool({
      ...db,
      max: poolSize,
      // Short timeouts: a database that does not answer becomes a 503 in seconds,
      // and the client retries; nothing waits on a dead connection.
      connectionTimeoutMillis: 2000,
      idleTimeoutMillis: 30000,
      statement_timeout: 5000,
      query_timeout: 6000,
      application_name: 'lab-ingest',
    })
    // An idle connection dies when the database restarts: the pool drops it; say so.
    this.pool.on('error', (e) => log(`database connection lost: ${e.message}`))
  }

  async insert(r: Reading, digest: string, backend: string): Promise<InsertResult> {
    const ins = await this.pool.query(
      `INSERT INTO readings (device_id, seq, time, value, digest, backend) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (device_id, seq) DO NOTHING`,
      [r.device, r.seq, r.time, r.value, digest, backend])
    if (ins.rowCount === 1) return 'stored'
    const prior = await this.pool.query('SELECT digest FROM readings WHERE device_id = $1 AND seq = $2', [r.device, r.seq])
    return prior.rows[0]?.digest === digest ? 'duplicate' : 'conflict'
  }

  async list(device: string, after: number, limit: number): Promise<StoredReading[]> {
    const res = await this.pool.query(
      'SELECT seq, time, value, backend, received_at FROM readings WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [device, after, limit])
    return res.rows.map((row) => ({
      device, seq: Number(row.seq), time: (row.time as Date).toISOString(), value: row.value,
      backend: row.backend, received: (row.received_at as Date).toISOString(),
    }))
  }

  async healthy(): Promise<boolean> {
    await this.pool.query('SELECT 1 FROM readings LIMIT 0')
    return true
  }

  close() { return this.pool.end() }
}
