// The ingest server's TLS port, in process, with certificates from a services CA made
// by the lab PKI in a temp dir: the proxy's certificate is admitted; no certificate,
// another CA's, another identity of the same CA, and a revoked one (after a reload) are
// each refused with their reason; connections made before a reload end after their
// current request.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import path from 'node:path'
import t from 'tap'
import { ensureCa, issueServiceCert, revokeHost } from '../../provision/pki.js'
import { dnsNames, opensslReason, tlsListener, type Refusal, type TlsConfig } from '../../services/ingest/tls.js'

let why: string | false = false
try {
  execFileSync('pki', ['--gen', '--type', 'ecdsa', '--size', '256'], { stdio: 'pipe' })
} catch {
  why =
    'strongSwan pki with its openssl plugin is not installed: `npm test` installs it as root (strongswan-pki, libstrongswan-standard-plugins)'
}
try {
  execFileSync('openssl', ['version'], { stdio: 'pipe' })
} catch {
  why = 'the openssl command is not installed: `npm test` installs it as root (it makes the test keys)'
}

t.test('helpers: names from a subjectAltName, the reason from an OpenSSL error', async (t) => {
  t.same(dnsNames('DNS:proxy.lab, IP Address:10.20.0.10, DNS:x.lab'), ['proxy.lab', 'x.lab'])
  t.same(dnsNames(undefined), [])
  t.equal(
    opensslReason(
      '80CC62F93A7F0000:error:0A00009C:SSL routines:ssl3_get_record:http request:../ssl/record/ssl3_record.c:341:\n',
    ),
    'http request',
  )
  t.equal(opensslReason('socket hang up'), 'socket hang up')
})

t.test(
  'the readings port admits the proxy alone, refusing every other client with its reason',
  { skip: why },
  async (t) => {
    const dir = t.testdir({})
    const p = await ensureCa(dir, 'lab', 'services')
    const other = await ensureCa(path.join(dir, 'other'), 'other', 'services')
    const files: Record<string, { cert: string; key: string }> = {}
    const make = async (ca: typeof p, host: string, names: string[]) => {
      const key = execFileSync('openssl', [
        'genpkey',
        '-algorithm',
        'EC',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
      ]).toString()
      const pub = execFileSync('openssl', ['pkey', '-pubout'], { input: key }).toString()
      const cert = await issueServiceCert(ca, 'lab', host, pub, `O=lab, CN=${host}.lab`, names)
      const f = {
        cert: path.join(dir, `${host}-${ca === p ? 'p' : 'o'}.pem`),
        key: path.join(dir, `${host}-${ca === p ? 'p' : 'o'}.key`),
      }
      fs.writeFileSync(f.cert, cert)
      fs.writeFileSync(f.key, key, { mode: 0o600 })
      files[`${host}${ca === p ? '' : '@other'}`] = f
    }
    await make(p, 'backend-1', ['ingest.lab', '127.0.0.1'])
    await make(p, 'proxy', [])
    await make(p, 'database', [])
    await make(other, 'proxy', [])
    const config: TlsConfig = { ...files['backend-1'], ca: p.caCert, crl: p.crl, clients: ['proxy.lab'] }

    const logs: string[] = []
    const refused: Refusal[] = []
    const admitted: boolean[] = []
    const app = http.createServer((req, res) => {
      listener.retire(req, res)
      res.end('ok')
    })
    const listener = tlsListener(
      config,
      app,
      (l) => logs.push(l),
      (r) => refused.push(r),
      (resumed) => admitted.push(resumed),
    )
    await new Promise<void>((r) => listener.server.listen(0, '127.0.0.1', r))
    t.teardown(() => {
      app.closeAllConnections()
      listener.server.close()
    })
    const port = (listener.server.address() as { port: number }).port

    const get = (as?: { cert: string; key: string }, agent?: https.Agent) =>
      new Promise<{ status: number; connection?: string } | { error: string }>((resolve) => {
        const req = https.get(
          {
            host: '127.0.0.1',
            port,
            path: '/',
            ca: fs.readFileSync(p.caCert),
            servername: 'ingest.lab',
            agent: agent ?? false,
            ...(as ? { cert: fs.readFileSync(as.cert), key: fs.readFileSync(as.key) } : {}),
          },
          (res) => {
            res.resume()
            res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection }))
          },
        )
        req.on('error', (e) => resolve({ error: e.message }))
      })

    t.match(await get(files.proxy), { status: 200 }, "the proxy's certificate: admitted")
    t.match(await get(), { error: /./ }, 'no certificate: refused')
    t.match(await get(files['proxy@other']), { error: /./ }, "another CA's certificate naming the proxy: refused")
    t.match(
      await get(files.database),
      { error: /./ },
      'a valid certificate of the services CA that is not the proxy: refused',
    )
    t.same(refused, ['no_certificate', 'untrusted', 'not_a_client'])
    t.same(admitted, [false], 'one connection admitted, a full handshake')
    t.match(
      logs.join('\n'),
      /refused 127\.0\.0\.1: no client certificate[\s\S]*not from the services CA \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)[\s\S]*database\.lab is valid but not a client here \(admitted: proxy\.lab\)/,
    )

    // A kept-alive connection made before the proxy's certificate is revoked ends after
    // its next answer; a new one is refused as revoked.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
    t.teardown(() => agent.destroy())
    t.match(await get(files.proxy, agent), { status: 200, connection: 'keep-alive' })
    await revokeHost(p, 'proxy')
    t.equal(listener.reload(config), true, 'the new CRL is loaded')
    t.equal(listener.reload(config), false, 'the same files again: nothing to do')
    const last = await get(files.proxy, agent)
    t.match(last, { connection: 'close' }, 'the connection made before the reload is closed after its request')
    t.match(await get(files.proxy), { error: /./ }, 'the revoked certificate: refused')
    t.match(logs.at(-1), /refused 127\.0\.0\.1: client certificate proxy\.lab .* revoked \(on the services CA's CRL\)/)
  },
)
