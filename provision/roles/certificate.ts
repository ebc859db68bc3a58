// A host's X.509 identity from one of the lab's CAs, in four ordered steps, the same
// for a gateway's IKE certificate and a cloud service's TLS certificate: the CA
// trusted, the CA's current CRL installed, a key made on the host itself (0600, owned
// by the user who reads it; only the public key ever travels), and a certificate for
// that key. The certificate is reissued when missing, from another CA, for another
// key, near its end, or (more) whatever the caller checks; a revoked one stops the
// provision with the command that reissues it (pki.ts, certStillGood). Revocation and
// reissue on a running lab are pki-actions.ts, on the same CA files.
import fs from 'node:fs'
import { converge } from '../modules/command.js'
import { ensureFileContent, file } from '../modules/file.js'
import { certStillGood, ensureCa, pkiPaths, type CaKind, type CertInfo, type Pki } from '../pki.js'
import type { Context, Step } from '../runner.js'
import { raw, sh } from '../ssh.js'

export interface CertificateSpec {
  ca: CaKind
  /** Where the CA certificate and its CRL go on the host. */
  caCert: string
  crl: string
  /** Where a host's key and certificate go. */
  key: (host: string) => string
  cert: (host: string) => string
  /** The user who reads the key (the service's; root for charon). */
  owner: string
  /** A command that writes a new private key, PEM, to `out`. */
  keygen: (out: string) => string
  /** A command that prints the key's public half, PEM. */
  publicKey: (key: string) => string
  /** Issue the certificate for this public key (the CA's kind decides its fields). */
  issue: (ctx: Context, p: Pki, publicKeyPem: string) => Promise<string>
  /** What else the certificate must hold to be kept (its names, its subject). */
  more?: (ctx: Context, info: CertInfo) => boolean
  /** How the step names call the four things. */
  names: { ca: string; crl: string; key: string; cert: string }
  /** What the refusal of a revoked one calls it ("certificate", "service certificate"). */
  what: string
  /** The handler that makes the service use new files (a reload wherever it can). */
  notify: string[]
}

export function certificateSteps(spec: CertificateSpec): Step[] {
  const ca = (ctx: Context) => ensureCa(ctx.stateDir, ctx.plan.name, spec.ca)
  return [
    file(
      spec.names.ca,
      { path: spec.caCert, content: async (ctx) => fs.readFileSync((await ca(ctx)).caCert, 'utf8') },
      spec.notify,
    ),
    file(
      spec.names.crl,
      { path: spec.crl, content: async (ctx) => fs.readFileSync((await ca(ctx)).crl, 'utf8') },
      spec.notify,
    ),
    converge(
      spec.names.key,
      async (ctx) => {
        const k = spec.key(ctx.self.name)
        const r = await ctx.host.exec(sh`test -s ${k} && stat -c '%a %U' ${k}`, { check: false })
        return r.stdout.trim() === `600 ${spec.owner}`
      },
      async (ctx) => {
        const k = spec.key(ctx.self.name)
        const fresh = `${k}.new`
        await ctx.host.exec(
          sh`test -s ${k} || (umask 077 && ${raw(spec.keygen(fresh))} 2>/dev/null && mv ${fresh} ${k}); chown ${`${spec.owner}:${spec.owner}`} ${k} && chmod 600 ${k}`,
        )
      },
      spec.notify,
    ),
    {
      name: spec.names.cert,
      notify: spec.notify,
      async run(ctx) {
        const p = pkiPaths(ctx.stateDir, spec.ca)
        if (ctx.dryRun && !fs.existsSync(p.caCert)) return true
        await ca(ctx)
        const host = ctx.self.name
        // A dry run on a new host has no key yet (the key step only said it would make one).
        const key = await ctx.host.exec(spec.publicKey(spec.key(host)), { check: !ctx.dryRun })
        if (key.code !== 0) return true
        const pub = key.stdout
        const current = await ctx.host.exec(sh`cat ${spec.cert(host)}`, { check: false })
        const more = (info: CertInfo) => spec.more?.(ctx, info) ?? true
        if (
          current.code === 0 &&
          current.stdout.includes('BEGIN CERTIFICATE') &&
          (await certStillGood(p, current.stdout, pub, host, spec.what, more))
        )
          return false
        if (ctx.dryRun) return true
        await ensureFileContent(ctx, { path: spec.cert(host), content: await spec.issue(ctx, p, pub), mode: '0644' })
        return true
      },
    },
  ]
}
