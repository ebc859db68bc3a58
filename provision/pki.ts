// The lab's PKI, on the provisioning machine only (.lab/pki/, 0700, out of git): a root
// CA whose private key never leaves this machine, one certificate per gateway issued
// for the public key the gateway generated itself, and a CRL. strongSwan's own `pki`
// tool does the cryptography (Ed25519, from the openssl plugin).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'

export interface Pki { dir: string; caKey: string; caCert: string; crl: string; revokedFile: string }

const q = { quiet: true }
const CA_DAYS = 3650
const CERT_DAYS = 730
/** A CRL is re-signed when less than this is left of its validity. */
const CRL_DAYS = 90
const CRL_MIN_DAYS_LEFT = 30

export function pkiPaths(stateDir: string): Pki {
  const dir = path.join(stateDir, 'pki')
  return {
    dir,
    caKey: path.join(dir, 'ca.key'),
    caCert: path.join(dir, 'ca.pem'),
    crl: path.join(dir, 'crl.pem'),
    revokedFile: path.join(dir, 'revoked.json'),
  }
}

/** The IKE identity of a host: also its certificate's subjectAltName (DNS). */
export const ikeIdentity = (labName: string, host: string) => `${host}.${labName}`

async function pkiTool(args: string[], input?: string): Promise<string> {
  const r = await $({ ...q, input, nothrow: true })`pki ${args}`
  if (r.exitCode !== 0) {
    const why = r.stderr.split('\n').filter((l) => l && !l.startsWith('plugin ')).join(' ') || `exit ${r.exitCode}`
    throw new Error(`pki ${args[0]} failed: ${why}. Is strongswan-pki with libstrongswan-standard-plugins installed here?`)
  }
  return r.stdout
}

function writeSecret(file: string, content: string) {
  fs.writeFileSync(file, content, { mode: 0o600 })
  fs.chmodSync(file, 0o600)
}

/**
 * Create the CA once; afterwards only check its files are there and private. Gateways
 * are provisioned in parallel and each asks for the CA: calls are serialized, so a fresh
 * lab gets one CA, not one per gateway.
 */
let pkiQueue: Promise<unknown> = Promise.resolve()
export function ensureCa(stateDir: string, labName: string): Promise<Pki> {
  const next = pkiQueue.then(() => createOrCheckCa(stateDir, labName))
  pkiQueue = next.catch(() => {})
  return next
}

async function createOrCheckCa(stateDir: string, labName: string): Promise<Pki> {
  const p = pkiPaths(stateDir)
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 })
  fs.chmodSync(p.dir, 0o700)
  if (!fs.existsSync(p.caKey) || !fs.existsSync(p.caCert)) {
    const key = await pkiTool(['--gen', '--type', 'ed25519', '--outform', 'pem'])
    writeSecret(p.caKey, key)
    const cert = await withTemp({ 'ca.key': key }, (d) =>
      pkiTool(['--self', '--ca', '--lifetime', String(CA_DAYS), '--in', path.join(d, 'ca.key'), '--type', 'ed25519',
        '--dn', `O=${labName}, CN=${labName} root CA`, '--outform', 'pem']))
    fs.writeFileSync(p.caCert, cert)
    fs.rmSync(p.crl, { force: true })
  }
  fs.chmodSync(p.caKey, 0o600)
  await ensureCrl(p)
  return p
}

async function withTemp<T>(files: Record<string, string>, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-pki-'))
  try {
    for (const [name, content] of Object.entries(files)) writeSecret(path.join(dir, name), content)
    return await fn(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

export interface CertInfo { serial: string; subjectKeyHash: string; issuerOk: boolean; notAfter: Date }

/** Fingerprint of a public key (any form pki reads): compares a key with a certificate. */
export async function keyHash(pem: string, type: 'pub' | 'x509'): Promise<string> {
  const out = await withTemp({ 'in.pem': pem }, (d) => pkiTool(['--keyid', '--type', type, '--in', path.join(d, 'in.pem')]))
  const m = /keyid \(SHA-1 of subjectPublicKeyInfo\):\s+([0-9a-f:]+)/i.exec(out)
  if (!m) throw new Error(`pki --keyid printed no key hash: ${out.trim()}`)
  return m[1].toLowerCase()
}

export async function certInfo(p: Pki, pem: string): Promise<CertInfo> {
  return withTemp({ 'cert.pem': pem }, async (d) => {
    const file = path.join(d, 'cert.pem')
    const printed = await pkiTool(['--print', '--type', 'x509', '--in', file])
    const serial = /serial:\s+([0-9a-f:]+)/i.exec(printed)?.[1].toLowerCase() ?? ''
    const notAfter = new Date(/not after\s+(\w+ +\d+ [\d:]+ \d+)/.exec(printed)?.[1] ?? 0)
    const verify = await $({ ...q, nothrow: true })`pki --verify --in ${file} --cacert ${p.caCert}`
    return { serial, subjectKeyHash: await keyHash(pem, 'x509'), issuerOk: verify.exitCode === 0, notAfter }
  })
}

export interface Revocation { serial: string; host: string; date: string; reason: string }

export function revocations(p: Pki): Revocation[] {
  return fs.existsSync(p.revokedFile) ? JSON.parse(fs.readFileSync(p.revokedFile, 'utf8')) : []
}

/** Issue a certificate for a gateway's own public key, its identity in the SAN. */
export async function issueCert(p: Pki, labName: string, host: string, publicKeyPem: string): Promise<string> {
  const id = ikeIdentity(labName, host)
  const cert = await withTemp({ 'pub.pem': publicKeyPem }, (d) =>
    pkiTool(['--issue', '--cacert', p.caCert, '--cakey', p.caKey, '--type', 'pub', '--in', path.join(d, 'pub.pem'),
      '--dn', `O=${labName}, CN=${id}`, '--san', id, '--lifetime', String(CERT_DAYS),
      // serverAuth and clientAuth: either gateway may initiate; ikeIntermediate for IKE.
      '--flag', 'serverAuth', '--flag', 'clientAuth', '--flag', 'ikeIntermediate', '--outform', 'pem']))
  fs.mkdirSync(path.join(p.dir, 'certs'), { recursive: true })
  fs.writeFileSync(path.join(p.dir, 'certs', `${host}.pem`), cert)
  return cert
}

/** Re-sign the CRL when it is missing, near its end, or the revocations changed. */
export async function ensureCrl(p: Pki): Promise<boolean> {
  const revoked = revocations(p)
  const stamp = path.join(p.dir, 'crl.json')
  const want = JSON.stringify(revoked.map((r) => r.serial).sort())
  if (fs.existsSync(p.crl) && fs.existsSync(stamp)) {
    const had = JSON.parse(fs.readFileSync(stamp, 'utf8')) as { serials: string; nextUpdate: number }
    if (had.serials === want && had.nextUpdate - Date.now() > CRL_MIN_DAYS_LEFT * 86400e3) return false
  }
  const args = ['--signcrl', '--cacert', p.caCert, '--cakey', p.caKey, '--lifetime', String(CRL_DAYS)]
  if (fs.existsSync(p.crl)) args.push('--lastcrl', p.crl) // carries the CRL number forward
  for (const r of revoked) args.push('--reason', r.reason, '--serial', r.serial.replace(/:/g, ''))
  const crl = await pkiTool([...args, '--outform', 'pem'])
  fs.writeFileSync(p.crl, crl)
  fs.writeFileSync(stamp, JSON.stringify({ serials: want, nextUpdate: Date.now() + CRL_DAYS * 86400e3 }) + '\n')
  return true
}

/** Revoke the certificate currently issued to a host; the caller distributes the CRL. */
export async function revokeHost(p: Pki, host: string, reason = 'key-compromise'): Promise<Revocation> {
  const file = path.join(p.dir, 'certs', `${host}.pem`)
  if (!fs.existsSync(file)) throw new Error(`no certificate was issued to ${host} (${file} is missing): nothing to revoke`)
  const { serial } = await certInfo(p, fs.readFileSync(file, 'utf8'))
  const all = revocations(p)
  if (all.some((r) => r.serial === serial)) throw new Error(`${host}'s certificate ${serial} is already revoked`)
  const entry = { serial, host, date: new Date().toISOString(), reason }
  fs.writeFileSync(p.revokedFile, JSON.stringify([...all, entry], null, 2) + '\n')
  await ensureCrl(p)
  return entry
}

export function isRevoked(p: Pki, serial: string): boolean {
  return revocations(p).some((r) => r.serial === serial)
}
