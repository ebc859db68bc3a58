// A host's certificate lifecycle (provision/roles/certificate.ts), shell and all, on
// this machine in a temp dir, with the real tools: strongSwan's pki for an IKE key and
// certificate, openssl for a service's. Made once, then nothing changes; a lost key is
// made again and the certificate reissued for it; a certificate that no longer holds
// what the role needs is reissued; a revoked one stops with the command that mends it;
// a dry run says what it would do and does nothing.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { certInfo, issueCert, issueServiceCert, keyHash, pkiPaths, revokeHost } from '../../provision/pki.js'
import { certificateSteps, type CertificateSpec } from '../../provision/roles/certificate.js'
import type { Context } from '../../provision/runner.js'
import { sh } from '../../provision/ssh.js'
import { fakeContext } from '../lib/fake.js'
import { LocalHost } from '../lib/local-host.js'

let why: string | false = false
try {
  execFileSync('pki', ['--gen', '--type', 'ed25519'], { stdio: 'pipe' })
  execFileSync('openssl', ['version'], { stdio: 'pipe' })
} catch {
  why =
    'strongSwan pki (with its openssl plugin) or openssl is not installed: `npm test` installs them as root (strongswan-pki, libstrongswan-standard-plugins, openssl)'
}

const me = os.userInfo().username

function setup(t: Test, kind: 'ike' | 'services', more?: CertificateSpec['more']) {
  const dir = t.testdir({ host: {}, state: {} })
  const on = (f: string) => path.join(dir, 'host', f)
  const spec: CertificateSpec = {
    ca: kind,
    caCert: on('ca.pem'),
    crl: on('ca.crl'),
    key: (h) => on(`${h}.key`),
    cert: (h) => on(`${h}.pem`),
    owner: me,
    ...(kind === 'ike'
      ? {
          keygen: (out: string) => sh`pki --gen --type ed25519 --outform pem > ${out}`,
          publicKey: (key: string) => sh`pki --pub --in ${key} --outform pem 2>/dev/null`,
          issue: (ctx: Context, p, pub) => issueCert(p, ctx.plan.name, ctx.self.name, pub),
        }
      : {
          keygen: (out: string) => sh`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${out}`,
          publicKey: (key: string) => sh`openssl pkey -in ${key} -pubout`,
          issue: (ctx: Context, p, pub) =>
            issueServiceCert(p, ctx.plan.name, ctx.self.name, pub, `O=${ctx.plan.name}, CN=${ctx.self.name}`, []),
        }),
    ...(more ? { more } : {}),
    names: { ca: 'ca', crl: 'crl', key: 'key', cert: 'cert' },
    what: 'certificate',
    notify: ['reload'],
  }
  const ctx = (dryRun = false): Context => ({
    ...fakeContext(new LocalHost(), dryRun),
    stateDir: path.join(dir, 'state'),
  })
  const steps = certificateSteps(spec)
  /** One provision pass: which steps changed something. */
  const pass = async (dryRun = false) => {
    const changed: string[] = []
    for (const s of steps) if (await s.run(ctx(dryRun))) changed.push(s.name)
    return changed
  }
  const host = ctx().self.name
  return {
    spec,
    pass,
    host,
    keyFile: spec.key(host),
    certFile: spec.cert(host),
    p: pkiPaths(path.join(dir, 'state'), kind),
  }
}

for (const kind of ['ike', 'services'] as const) {
  t.test(
    `${kind}: made once, with the key on the host and the certificate for it; then nothing changes`,
    { skip: why },
    async (t) => {
      const s = setup(t, kind)
      t.same(await s.pass(), ['ca', 'crl', 'key', 'cert'], 'the first pass makes all four')
      const st = fs.statSync(s.keyFile)
      t.equal(st.mode & 0o777, 0o600, 'the key is 0600')
      t.equal(st.uid, os.userInfo().uid, 'owned by the user who reads it')
      const info = await certInfo(s.p, fs.readFileSync(s.certFile, 'utf8'))
      t.ok(info.issuerOk, 'the certificate verifies against the CA')
      const pub = execFileSync('sh', ['-c', s.spec.publicKey(s.keyFile)]).toString()
      t.equal(info.subjectKeyHash, await keyHash(pub, 'pub'), "for the host's own key")
      t.equal(fs.readFileSync(s.spec.caCert, 'utf8'), fs.readFileSync(s.p.caCert, 'utf8'), 'the CA is installed')
      t.equal(fs.readFileSync(s.spec.crl, 'utf8'), fs.readFileSync(s.p.crl, 'utf8'), 'and its CRL')
      t.same(await s.pass(), [], 'a second pass changes nothing')
    },
  )
}

t.test('a lost key is made again, and the certificate reissued for the new one', { skip: why }, async (t) => {
  const s = setup(t, 'ike')
  await s.pass()
  const before = fs.readFileSync(s.certFile, 'utf8')
  fs.rmSync(s.keyFile)
  t.same(await s.pass(), ['key', 'cert'])
  t.not(fs.readFileSync(s.certFile, 'utf8'), before, 'a new certificate')
  t.same(await s.pass(), [], 'then nothing')
})

t.test('a loose key mode is put right, the key kept', { skip: why }, async (t) => {
  const s = setup(t, 'services')
  await s.pass()
  const key = fs.readFileSync(s.keyFile, 'utf8')
  fs.chmodSync(s.keyFile, 0o644)
  t.same(await s.pass(), ['key'], 'only the key step')
  t.equal(fs.statSync(s.keyFile).mode & 0o777, 0o600)
  t.equal(fs.readFileSync(s.keyFile, 'utf8'), key, 'the same key')
})

t.test('a certificate that no longer holds what the role needs is reissued; garbage too', { skip: why }, async (t) => {
  let wanted = true
  const s = setup(t, 'services', () => wanted)
  await s.pass()
  wanted = false
  t.same(await s.pass(), ['cert'], "the role's check fails: reissued")
  wanted = true
  fs.writeFileSync(s.certFile, 'not a certificate\n')
  t.same(await s.pass(), ['cert'], 'a file that holds no certificate: reissued')
})

t.test('a revoked certificate stops the provision with the command that reissues it', { skip: why }, async (t) => {
  const s = setup(t, 'ike')
  await s.pass()
  await revokeHost(s.p, s.host)
  await t.rejects(s.pass(), {
    message: new RegExp(`${s.host}'s certificate \\(serial .*\\) is revoked: .*npm run pki -- reissue ${s.host}`),
  })
  t.equal(fs.readFileSync(s.spec.crl, 'utf8'), fs.readFileSync(s.p.crl, 'utf8'), 'the new CRL went out first')
})

t.test('a dry run on a fresh host says all four would change, and makes nothing on it', { skip: why }, async (t) => {
  const s = setup(t, 'ike')
  t.same(await s.pass(true), ['ca', 'crl', 'key', 'cert'])
  t.same(fs.readdirSync(path.dirname(s.keyFile)), [], 'the host has none of the files')
})
