// The lab's PKI, on the provisioning machine only (.lab/pki/, 0700, out of git). Two
// CAs, each with its own key, CRL and revocations, and neither key ever leaves this
// machine; every certificate is issued for a public key its host generated itself.
// - ike (.lab/pki/): the gateways' IKE certificates, Ed25519.
// - services (.lab/pki/services/): TLS inside the cloud (proxy, backends, database),
//   ECDSA P-256, for two reasons. Trust separation: a gateway's certificate is no TLS
//   client or server in the cloud, and a service's is no IKE peer, whatever either
//   claims. Algorithm: SCRAM channel binding (tls-server-end-point) hashes the server
//   certificate with its signature's digest, which Ed25519 lacks, so PostgreSQL could
//   not bind a login to an Ed25519 certificate.
// strongSwan's own `pki` tool does the cryptography (its openssl plugin).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { shellQuote } from './ssh.js'

export type CaKind = 'ike' | 'services'
export interface Pki {
  kind: CaKind
  dir: string
  caKey: string
  caCert: string
  crl: string
  revokedFile: string
}

/** How each CA's keys are made and signed with. */
const CA_SPEC: Record<CaKind, { sub: string; gen: string[]; keyType: string; cn: string; digest: string[] }> = {
  ike: { sub: '', gen: ['--type', 'ed25519'], keyType: 'ed25519', cn: 'root CA', digest: [] },
  services: {
    sub: 'services',
    gen: ['--type', 'ecdsa', '--size', '256'],
    keyType: 'ecdsa',
    cn: 'services CA',
    digest: ['--digest', 'sha256'],
  },
}

const q = { quiet: true }
const CA_DAYS = 3650
const CERT_DAYS = 730
/** A CRL is re-signed when less than this is left of its validity. */
const CRL_DAYS = 90
const CRL_MIN_DAYS_LEFT = 30

export function pkiPaths(stateDir: string, kind: CaKind = 'ike'): Pki {
  const dir = path.join(stateDir, 'pki', CA_SPEC[kind].sub)
  return {
    kind,
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
    const why =
      r.stderr
        .split('\n')
        .filter((l) => l && !l.startsWith('plugin '))
        .join(' ') || `exit ${r.exitCode}`
    throw new Error(
      `pki ${args[0]} failed: ${why}. Is strongswan-pki with libstrongswan-standard-plugins installed here?`,
    )
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
export function ensureCa(stateDir: string, labName: string, kind: CaKind = 'ike'): Promise<Pki> {
  const next = pkiQueue.then(() => createOrCheckCa(stateDir, labName, kind))
  pkiQueue = next.catch(() => {})
  return next
}

async function createOrCheckCa(stateDir: string, labName: string, kind: CaKind): Promise<Pki> {
  const p = pkiPaths(stateDir, kind)
  const spec = CA_SPEC[kind]
  for (const dir of [path.dirname(p.dir), p.dir]) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    fs.chmodSync(dir, 0o700)
  }
  if (!fs.existsSync(p.caKey) || !fs.existsSync(p.caCert)) {
    const key = await pkiTool(['--gen', ...spec.gen, '--outform', 'pem'])
    writeSecret(p.caKey, key)
    const cert = await withTemp({ 'ca.key': key }, (d) =>
      pkiTool([
        '--self',
        '--ca',
        '--lifetime',
        String(CA_DAYS),
        '--in',
        path.join(d, 'ca.key'),
        '--type',
        spec.keyType,
        ...spec.digest,
        '--dn',
        `O=${labName}, CN=${labName} ${spec.cn}`,
        '--outform',
        'pem',
      ]),
    )
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

export interface CertInfo {
  serial: string
  subject: string
  subjectKeyHash: string
  issuerOk: boolean
  notAfter: Date
  altNames: string[]
}

/** Fingerprint of a public key (any form pki reads): compares a key with a certificate. */
export async function keyHash(pem: string, type: 'pub' | 'x509'): Promise<string> {
  const out = await withTemp({ 'in.pem': pem }, (d) =>
    pkiTool(['--keyid', '--type', type, '--in', path.join(d, 'in.pem')]),
  )
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
    const subject = /subject:\s+"(.*)"/.exec(printed)?.[1] ?? ''
    const altNames = (/altNames:\s+(.+)/.exec(printed)?.[1] ?? '')
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean)
    const verify = await $({ ...q, nothrow: true })`pki --verify --in ${file} --cacert ${p.caCert}`
    return {
      serial,
      subject,
      subjectKeyHash: await keyHash(pem, 'x509'),
      issuerOk: verify.exitCode === 0,
      notAfter,
      altNames,
    }
  })
}

export interface Revocation {
  serial: string
  host: string
  date: string
  reason: string
}

export function revocations(p: Pki): Revocation[] {
  return fs.existsSync(p.revokedFile) ? (JSON.parse(fs.readFileSync(p.revokedFile, 'utf8')) as Revocation[]) : []
}

/** Issue a certificate for a gateway's own public key, its identity in the SAN. */
/**
 * An IKE certificate for a gateway's own key, kept under the host's name; its identity is
 * the host's, or the pair's it serves in (a hub pair's members each have their own key and
 * certificate, both naming the hub, so a site authenticates whichever answers).
 */
export async function issueCert(
  p: Pki,
  labName: string,
  host: string,
  publicKeyPem: string,
  identityOf = host,
): Promise<string> {
  return keepIssued(p, host, await signIkeCert(p, labName, ikeIdentity(labName, identityOf), publicKeyPem))
}

/** An IKE certificate from the lab CA for this public key, naming `id` (subject CN and SAN). */
async function signIkeCert(p: Pki, labName: string, id: string, publicKeyPem: string): Promise<string> {
  return withTemp({ 'pub.pem': publicKeyPem }, (d) =>
    pkiTool([...ikeCertArgs(p, labName, id), '--type', 'pub', '--in', path.join(d, 'pub.pem')]),
  )
}

/** `pki --issue`'s arguments for an IKE certificate naming `id`, but what it is issued for. */
function ikeCertArgs(p: Pki, labName: string, id: string): string[] {
  return [
    '--issue',
    '--cacert',
    p.caCert,
    '--cakey',
    p.caKey,
    '--dn',
    `O=${labName}, CN=${id}`,
    '--san',
    id,
    '--lifetime',
    String(CERT_DAYS),
    // serverAuth and clientAuth: either gateway may initiate; ikeIntermediate for IKE.
    '--flag',
    'serverAuth',
    '--flag',
    'clientAuth',
    '--flag',
    'ikeIntermediate',
    '--outform',
    'pem',
  ]
}

/**
 * The keys and certificates of a site farm's first `n` sites (the sites curve), made
 * once and kept beside the CA (0600, a directory of their own), so a second run reuses
 * them: `id(i)` names site i. One shell per hundred sites, two at a time: a process
 * per call costs more than the cryptography (measured: 0.1 s each on a loaded lab).
 */
export async function farmCredentials(
  p: Pki,
  labName: string,
  n: number,
  id: (i: number) => string,
): Promise<{ dir: string; key: (i: number) => string; cert: (i: number) => string }> {
  const dir = path.join(p.dir, 'farm')
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  fs.chmodSync(dir, 0o700)
  const key = (i: number) => path.join(dir, `${i}.key`)
  const cert = (i: number) => path.join(dir, `${i}.pem`)
  // A certificate is kept only for the identity asked now (a farm of another lab's name is not).
  const todo = Array.from({ length: n }, (_, i) => i + 1).filter(
    (i) => !fs.existsSync(cert(i)) || !fs.existsSync(path.join(dir, `${i}.${id(i)}`)),
  )
  const script = (is: number[]) =>
    'set -e; umask 077\n' +
    is
      .map((i) =>
        [
          `rm -f ${shellQuote(dir)}/${i}.*`,
          `pki --gen --type ed25519 --outform pem > ${shellQuote(key(i))}`,
          `pki ${ikeCertArgs(p, labName, id(i)).map(shellQuote).join(' ')} --type priv --in ${shellQuote(key(i))} > ${shellQuote(cert(i))}.new`,
          `mv ${shellQuote(cert(i))}.new ${shellQuote(cert(i))}`,
          `: > ${shellQuote(path.join(dir, `${i}.${id(i)}`))}`,
        ].join('\n'),
      )
      .join('\n')
  const chunks: number[][] = []
  for (let k = 0; k < todo.length; k += 100) chunks.push(todo.slice(k, k + 100))
  for (let k = 0; k < chunks.length; k += 2)
    await Promise.all(
      chunks.slice(k, k + 2).map(async (c) => {
        const r = await $({ ...q, input: script(c), nothrow: true })`bash -s 2>&1`
        if (r.exitCode !== 0) throw new Error(`issuing the farm's certificates failed: ${r.stdout.trim().slice(-400)}`)
      }),
    )
  return { dir, key, cert }
}

function keepIssued(p: Pki, host: string, cert: string): string {
  fs.mkdirSync(path.join(p.dir, 'certs'), { recursive: true })
  fs.writeFileSync(path.join(p.dir, 'certs', `${host}.pem`), cert)
  return cert
}

/** The certificate last issued to a host by this CA, if any. */
export function issuedCert(p: Pki, host: string): string | undefined {
  const f = path.join(p.dir, 'certs', `${host}.pem`)
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined
}

/**
 * A TLS certificate from the services CA for a service host's own public key: its
 * identity (<host>.<lab>) is the first subjectAltName, more names and addresses follow;
 * dn is the subject. Server and client: a backend is a server to nginx and a client of
 * PostgreSQL.
 */
export async function issueServiceCert(
  p: Pki,
  labName: string,
  host: string,
  publicKeyPem: string,
  dn: string,
  altNames: string[],
): Promise<string> {
  if (p.kind !== 'services') throw new Error('service certificates come from the services CA')
  const id = ikeIdentity(labName, host)
  const sans = [...new Set([id, ...altNames])].flatMap((n) => ['--san', n])
  const cert = await withTemp({ 'pub.pem': publicKeyPem }, (d) =>
    pkiTool([
      '--issue',
      '--cacert',
      p.caCert,
      '--cakey',
      p.caKey,
      '--type',
      'pub',
      '--in',
      path.join(d, 'pub.pem'),
      ...CA_SPEC.services.digest,
      '--dn',
      dn,
      ...sans,
      '--lifetime',
      String(CERT_DAYS),
      '--flag',
      'serverAuth',
      '--flag',
      'clientAuth',
      '--outform',
      'pem',
    ]),
  )
  return keepIssued(p, host, cert)
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
  const args = [
    '--signcrl',
    '--cacert',
    p.caCert,
    '--cakey',
    p.caKey,
    ...CA_SPEC[p.kind].digest,
    '--lifetime',
    String(CRL_DAYS),
  ]
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
  if (!fs.existsSync(file))
    throw new Error(`no certificate was issued to ${host} (${file} is missing): nothing to revoke`)
  const { serial } = await certInfo(p, fs.readFileSync(file, 'utf8'))
  const all = revocations(p)
  if (all.some((r) => r.serial === serial)) throw new Error(`${host}'s certificate ${serial} is already revoked`)
  const entry = { serial, host, date: new Date().toISOString(), reason }
  fs.writeFileSync(p.revokedFile, JSON.stringify([...all, entry], null, 2) + '\n')
  await ensureCrl(p)
  return entry
}

/** Whether the certificate the CA last issued to this host is on its CRL (by the CA's own records). */
export async function hostRevoked(p: Pki, host: string): Promise<boolean> {
  const cert = issuedCert(p, host)
  return !!cert && isRevoked(p, (await certInfo(p, cert)).serial)
}

export function isRevoked(p: Pki, serial: string): boolean {
  return revocations(p).some((r) => r.serial === serial)
}

/** A certificate is reissued when less than this is left of its validity. */
const CERT_DAYS_LEFT_MIN = 30

/**
 * Is the certificate a host holds still right: from this CA, for the host's own public
 * key, not near its end, and (more) whatever else the caller needs? A revoked one is an
 * error naming the command to run, never silently replaced.
 */
export async function certStillGood(
  p: Pki,
  pem: string,
  publicKeyPem: string,
  host: string,
  what: string,
  more: (info: CertInfo) => boolean = () => true,
): Promise<boolean> {
  const info = await certInfo(p, pem)
  if (isRevoked(p, info.serial)) {
    throw new Error(
      `${host}'s ${what} (serial ${info.serial}) is revoked: issue a new key and certificate with \`npm run pki -- reissue ${host}\``,
    )
  }
  const fresh = info.notAfter.getTime() - Date.now() > CERT_DAYS_LEFT_MIN * 86400e3
  return info.issuerOk && fresh && more(info) && info.subjectKeyHash === (await keyHash(publicKeyPem, 'pub'))
}
