// lab-ingest: the ingest server on a backend host (systemd unit lab-ingest.service).
// Configuration, device keys and TLS files are files the provisioner writes (0600, this
// service's user). Readings arrive on the listen port, over mutual TLS from the proxy
// alone (tls.ts) unless the topology turned TLS off; /metrics and /healthz are also on
// the monitoring port, plain, for Prometheus. SIGHUP reloads the keys, the certificates
// and the CRL (a new key or a revocation needs no restart).
import fs from 'node:fs'
import http from 'node:http'
import { log } from '../lib/log.js'
import { Counter, counterOf } from '../lib/metrics.js'
import type { BatcherOptions } from './batcher.js'
import { ingestHandler } from './server.js'
import { PgStore, type DbConfig } from './store.js'
import { REFUSALS, tlsListener, type Refusal, type TlsConfig, type TlsListener } from './tls.js'

interface Config {
  backend: string
  listen: { address: string; port: number }
  tls?: TlsConfig
  monitoring?: { address: string; port: number }
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

const store = new PgStore(config.db, log, config.poolSize, config.batch)
let tlsRefused: Counter | undefined
let tlsAdmitted: Counter | undefined
const { handler } = ingestHandler({
  store,
  keyOf: (d) => keys.get(d),
  backend: config.backend,
  log,
  metrics: (r) => {
    counterOf(
      r,
      'ingest_db_batches_total',
      'INSERT statements (each one commit) sent to the database',
      () => store.batcher.batches,
    )
    counterOf(
      r,
      'ingest_db_batched_readings_total',
      'Readings in those statements (divide by batches: the mean batch)',
      () => store.batcher.items,
    )
    tlsRefused = new Counter({
      name: 'ingest_tls_refused_total',
      help: 'Connections to the readings port refused, by reason (no certificate, untrusted or revoked, not the proxy, a failed handshake)',
      labelNames: ['reason'],
      registers: [r],
    })
    for (const reason of REFUSALS) tlsRefused.inc({ reason }, 0)
    // Few handshakes for many readings: nginx keeps its TLS connections open, and resumes
    // sessions when it opens new ones.
    tlsAdmitted = new Counter({
      name: 'ingest_tls_handshakes_total',
      help: 'TLS connections admitted on the readings port, by whether the session was resumed',
      labelNames: ['resumed'],
      registers: [r],
    })
    for (const resumed of ['true', 'false']) tlsAdmitted.inc({ resumed }, 0)
  },
})

let tls: TlsListener | undefined
const app = http.createServer((req, res) => {
  tls?.retire(req, res)
  handler(req, res)
})
// nginx keeps connections to us open (upstream keepalive): idle ones must outlive its
// own keepalive_timeout, or a request can race our close and be retried.
app.keepAliveTimeout = 75_000
app.headersTimeout = 10_000
app.requestTimeout = 15_000
const where = `${config.listen.address}:${config.listen.port}`
if (config.tls) {
  tls = tlsListener(
    config.tls,
    app,
    log,
    (reason: Refusal) => tlsRefused?.inc({ reason }),
    (resumed) => tlsAdmitted?.inc({ resumed: String(resumed) }),
  )
  tls.server.listen(config.listen.port, config.listen.address, () =>
    log(`${config.backend} ingesting on ${where}, mutual TLS: clients ${config.tls!.clients.join(', ')}`),
  )
} else {
  app.listen(config.listen.port, config.listen.address, () =>
    log(`${config.backend} ingesting on ${where}, plain HTTP (telemetry.cloud_tls is false)`),
  )
}

// The monitor's port: counters and health, nothing else.
const monitoring =
  config.monitoring &&
  http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/metrics' || path === '/healthz') return handler(req, res)
    res
      .writeHead(404, { 'content-type': 'application/json' })
      .end('{"error":"the monitoring port serves GET /metrics and /healthz only"}\n')
  })
monitoring?.listen(config.monitoring!.port, config.monitoring!.address, () =>
  log(`metrics and health on ${config.monitoring!.address}:${config.monitoring!.port}`),
)

process.on('SIGHUP', () => {
  try {
    loadKeys()
  } catch (e) {
    log(`keys not reloaded, the old ones stay: ${(e as Error).message}`)
  }
  try {
    const fresh = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Config
    if (tls && fresh.tls && tls.reload(fresh.tls))
      log('TLS: new certificate, key, CA or CRL loaded; connections made before end after their current request')
    if (store.reconfigure(fresh.db))
      log('database: new TLS files or settings; new connections use them, the old ones end when idle')
  } catch (e) {
    log(`TLS files not reloaded, the old ones stay: ${(e as Error).message}`)
  }
})

function shutdown(signal: string) {
  log(`${signal}: finishing requests in flight`)
  monitoring?.close()
  const listener = tls?.server ?? app
  listener.close(() => void store.close().finally(() => process.exit(0)))
  app.closeIdleConnections?.()
  setTimeout(() => process.exit(0), 5000).unref()
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
