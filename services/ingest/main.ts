// lab-ingest: the ingest server on a backend host (systemd unit lab-ingest.service).
// Configuration and device keys are files the provisioner writes (0600, this
// service's user); SIGHUP reloads the keys, so adding devices needs no restart.
import fs from 'node:fs'
import http from 'node:http'
import { log } from '../lib/log.js'
import { counterOf } from '../lib/metrics.js'
import type { BatcherOptions } from './batcher.js'
import { ingestHandler } from './server.js'
import { PgStore, type DbConfig } from './store.js'

interface Config {
  backend: string
  listen: { address: string; port: number }
  db: DbConfig
  keysFile: string
  poolSize?: number
  batch?: BatcherOptions
}

const configFile = process.argv[2] ?? '/etc/lab-ingest/config.json'
const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Config

let keys = new Map<string, Buffer>()
function loadKeys() {
  const raw = JSON.parse(fs.readFileSync(config.keysFile, 'utf8')) as Record<string, string>
  keys = new Map(Object.entries(raw).map(([id, hex]) => [id, Buffer.from(hex, 'hex')]))
  log(`${keys.size} device keys loaded from ${config.keysFile}`)
}
loadKeys()
process.on('SIGHUP', () => {
  try { loadKeys() } catch (e) { log(`keys not reloaded, the old ones stay: ${(e as Error).message}`) }
})

const store = new PgStore(config.db, log, config.poolSize, config.batch)
const { handler } = ingestHandler({
  store, keyOf: (d) => keys.get(d), backend: config.backend, log,
  metrics: (r) => {
    counterOf(r, 'ingest_db_batches_total', 'INSERT statements (each one commit) sent to the database', () => store.batcher.batches)
    counterOf(r, 'ingest_db_batched_readings_total', 'Readings in those statements (divide by batches: the mean batch)', () => store.batcher.items)
  },
})
const server = http.createServer(handler)
// nginx keeps connections to us open (upstream keepalive): idle ones must outlive its
// own keepalive_timeout, or a request can race our close and be retried.
server.keepAliveTimeout = 75_000
server.headersTimeout = 10_000
server.requestTimeout = 15_000
server.listen(config.listen.port, config.listen.address, () => log(`${config.backend} ingesting on ${config.listen.address}:${config.listen.port}`))

function shutdown(signal: string) {
  log(`${signal}: finishing requests in flight`)
  server.close(() => store.close().finally(() => process.exit(0)))
  server.closeIdleConnections?.()
  setTimeout(() => process.exit(0), 5000).unref()
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
