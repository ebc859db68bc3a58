// The ingest server's readings port over mutual TLS: a connection is admitted only with
// a client certificate from the services CA, not revoked, whose identity is one of the
// configured clients (the proxy). Every refusal is logged with its reason and counted.
// Admitted connections are handed to the plain HTTP server, which never sees the others.
// A reload swaps the certificate, key, CA and CRL in place; connections made under the
// old ones are closed after their current request, so a revocation bites on the next.
import fs from 'node:fs'
import type http from 'node:http'
import type net from 'node:net'
import tls from 'node:tls'

export interface TlsFiles {
  cert: string
  key: string
  ca: string
  crl: string
}
export interface TlsConfig extends TlsFiles {
  clients: string[]
}
export type Refusal = 'no_certificate' | 'untrusted' | 'not_a_client' | 'handshake'
export const REFUSALS: Refusal[] = ['no_certificate', 'untrusted', 'not_a_client', 'handshake']

/** The files' contents: what a secure context (server or client) is made of. */
export function readTlsFiles(f: TlsFiles) {
  return {
    cert: fs.readFileSync(f.cert),
    key: fs.readFileSync(f.key),
    ca: fs.readFileSync(f.ca),
    crl: fs.readFileSync(f.crl),
  }
}

/** The DNS names in a certificate's subjectAltName ("DNS:a, IP Address:10.0.0.1"). */
export function dnsNames(subjectaltname: string | undefined): string[] {
  return (subjectaltname ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4))
}

/** OpenSSL's reason in one of its error lines ("...:SSL routines:func:http request:file.c:341:"). */
export function opensslReason(message: string): string {
  return /SSL routines:[^:]*:([^:]+):/.exec(message)?.[1] ?? message.trim()
}

/** Is this TLS connection one of the clients? If not, why (for the log and the counter). */
export function admit(
  socket: tls.TLSSocket,
  clients: string[],
): { ok: true; identity: string } | { ok: false; reason: Refusal; why: string } {
  const peer = socket.getPeerCertificate()
  if (!peer || Object.keys(peer).length === 0)
    return { ok: false, reason: 'no_certificate', why: 'no client certificate' }
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unknown')
    return {
      ok: false,
      reason: 'untrusted',
      why: `client certificate ${String(peer.subject?.CN ?? '?')} (serial ${peer.serialNumber}) refused: ${code === 'CERT_REVOKED' ? "revoked (on the services CA's CRL)" : `not from the services CA (${code})`}`,
    }
  }
  const names = dnsNames(peer.subjectaltname)
  const identity = names.find((n) => clients.includes(n))
  if (!identity)
    return {
      ok: false,
      reason: 'not_a_client',
      why: `client certificate for ${names.join(', ') || String(peer.subject?.CN)} is valid but not a client here (admitted: ${clients.join(', ')})`,
    }
  return { ok: true, identity }
}

export interface TlsListener {
  server: tls.Server
  /** New files (a reissue, a new CRL): new handshakes use them; old connections end after their current request. */
  reload(config: TlsConfig): boolean
  /** Mark a response to end its connection if that connection predates the last reload. */
  retire(req: http.IncomingMessage, res: http.ServerResponse): void
}

export function tlsListener(
  config: TlsConfig,
  app: http.Server,
  log: (l: string) => void,
  refused: (r: Refusal) => void,
  admitted: (resumed: boolean) => void = () => {},
): TlsListener {
  let current = config
  // The files are read once per load: what the context is made of, and what tells a
  // reload whether anything changed.
  const load = (c: TlsConfig) => {
    const files = readTlsFiles(c)
    return { stamp: JSON.stringify(files), options: { ...files, minVersion: 'TLSv1.3' } as tls.SecureContextOptions }
  }
  let loaded = load(config)
  let generation = 0
  const born = new WeakMap<net.Socket, number>()
  // rejectUnauthorized false: Node would drop an unverified client silently; here the
  // check is ours (admit), so that the log says which certificate and why.
  const server = tls.createServer({ ...loaded.options, requestCert: true, rejectUnauthorized: false }, (socket) => {
    const a = admit(socket, current.clients)
    if (!a.ok) {
      refused(a.reason)
      log(`TLS: refused ${socket.remoteAddress}: ${a.why}`)
      socket.destroy()
      return
    }
    born.set(socket, generation)
    admitted(socket.isSessionReused())
    app.emit('connection', socket)
  })
  server.on('tlsClientError', (e: Error & { code?: string }, socket: tls.TLSSocket) => {
    refused('handshake')
    log(
      `TLS: handshake with ${socket.remoteAddress ?? '?'} failed: ${opensslReason(e.message)}${e.code ? ` (${e.code})` : ''}`,
    )
  })
  return {
    server,
    reload(c) {
      const next = load(c)
      current = c
      if (next.stamp === loaded.stamp) return false
      server.setSecureContext(next.options)
      loaded = next
      generation++
      app.closeIdleConnections?.()
      return true
    },
    retire(req, res) {
      if ((born.get(req.socket) ?? generation) < generation) res.setHeader('connection', 'close')
    },
  }
}
