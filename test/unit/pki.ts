// The lab PKI with strongSwan's own pki tool, in a temp dir: one CA however many
// gateways ask at once, certificates that verify, revocation that lands in the CRL.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { certInfo, ensureCa, ikeIdentity, isRevoked, issueCert, keyHash, revokeHost } from '../../provision/pki.js'

let why: string | false = false
try {
  execFileSync('pki', ['--gen', '--type', 'ed25519'], { stdio: 'pipe' })
} catch {
  why =
    'strongSwan pki with its openssl plugin is not installed: `npm test` installs it as root (strongswan-pki, libstrongswan-standard-plugins)'
}

const gatewayKey = () => {
  const key = execFileSync('pki', ['--gen', '--type', 'ed25519', '--outform', 'pem'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString()
  return execFileSync('pki', ['--pub', '--outform', 'pem'], {
    input: key,
    stdio: ['pipe', 'pipe', 'ignore'],
  }).toString()
}

t.test('gateways asking for the CA at once get one and the same CA', { skip: why }, async (t) => {
  const dir = t.testdir({})
  const [a, b, c] = await Promise.all([ensureCa(dir, 'lab'), ensureCa(dir, 'lab'), ensureCa(dir, 'lab')])
  t.equal(a.caCert, b.caCert)
  t.equal(b.caCert, c.caCert)
  t.equal(fs.statSync(a.caKey).mode & 0o777, 0o600, 'the CA key is 0600')
  t.equal(fs.statSync(path.dirname(a.caKey)).mode & 0o777, 0o700, 'in a 0700 folder')
  const caBefore = fs.readFileSync(a.caCert, 'utf8')
  const pubs = [gatewayKey(), gatewayKey()]
  const certs = await Promise.all([issueCert(a, 'lab', 'gw-a', pubs[0]), issueCert(a, 'lab', 'gw-b', pubs[1])])
  for (const [i, cert] of certs.entries()) {
    const info = await certInfo(a, cert)
    t.ok(info.issuerOk, `certificate ${i} verifies against the CA`)
    t.equal(info.subjectKeyHash, await keyHash(pubs[i], 'pub'), "for the gateway's own public key")
  }
  await ensureCa(dir, 'lab')
  t.equal(fs.readFileSync(a.caCert, 'utf8'), caBefore, 'a later call keeps the CA')
  const printed = execFileSync('pki', ['--print', '--in', path.join(a.dir, 'certs', 'gw-a.pem')], {
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString()
  t.match(
    printed,
    new RegExp(`altNames:\\s+${ikeIdentity('lab', 'gw-a').replace('.', '\\.')}`),
    'the IKE identity is the subjectAltName',
  )
})

t.test('a revoked certificate is in the re-signed CRL', { skip: why }, async (t) => {
  const dir = t.testdir({})
  const p = await ensureCa(dir, 'lab')
  const cert = await issueCert(p, 'lab', 'gw-a', gatewayKey())
  const { serial } = await certInfo(p, cert)
  const crlBefore = fs.readFileSync(p.crl, 'utf8')
  const r = await revokeHost(p, 'gw-a')
  t.equal(r.serial, serial)
  t.ok(isRevoked(p, serial))
  t.not(fs.readFileSync(p.crl, 'utf8'), crlBefore, 'the CRL was re-signed')
  const listed = execFileSync('pki', ['--print', '--type', 'crl', '--in', p.crl], {
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString()
  t.match(listed, serial, 'and lists the serial')
  await t.rejects(revokeHost(p, 'gw-a'), /already revoked/)
  await t.rejects(revokeHost(p, 'gw-z'), /no certificate was issued to gw-z/)
})
