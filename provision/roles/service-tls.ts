// A cloud service's TLS identity (proxy, backends, database): the services CA and its
// CRL, a key made on the host itself (ECDSA P-256, 0600, readable by the service's user
// alone), and a certificate from the services CA for that key. The CA key stays on the
// provisioning machine; only the public key travels. The certificate is reissued when
// it is missing, from another CA, for another key, near its end, or its names changed;
// a revoked one stops the provision with what to do (as for a gateway).
import { directory } from '../modules/file.js'
import { ikeIdentity, issueServiceCert } from '../pki.js'
import { certificateSteps } from './certificate.js'
import type { Context, Step } from '../runner.js'
import { sh } from '../ssh.js'
import { hostsWithRole, vrrpGroupOf, type Plan } from '../plan.js'
import { DB } from '../ports.js'

export const TLS_DIR = '/etc/lab-tls'

const SERVICES_CA = `${TLS_DIR}/services-ca.pem`
const SERVICES_CRL = `${TLS_DIR}/services.crl`

export const tlsFiles = (host: string) => ({
  ca: SERVICES_CA,
  crl: SERVICES_CRL,
  cert: `${TLS_DIR}/${host}.pem`,
  key: `${TLS_DIR}/${host}.key`,
})

/** A host's TLS identity: <host>.<lab>, its certificate's CN and first name. */
export const tlsIdentity = (t: Plan, host: string) => ikeIdentity(t.name, host)

/** The roles that speak TLS inside the cloud. */
export const TLS_ROLES = ['proxy', 'backend', 'db'] as const
export const isServiceRole = (role: string) => (TLS_ROLES as readonly string[]).includes(role)

/** The names and addresses in a host's certificate besides its identity. */
export function altNames(t: Plan, host: string): string[] {
  const self = t.hosts.find((h) => h.name === host)!
  // A member of a group serves on the group's virtual address too (the database
  // cluster's primary: the backends verify the name they connect to).
  const virtual = (vrrpGroupOf(t, host)?.addresses ?? []).map((a) => a.address)
  const lanAddresses = [
    ...self.interfaces.filter((i) => i.network !== self.mgmt.network).map((i) => i.address),
    ...virtual,
  ]
  // nginx verifies a single proxy_ssl_name for the whole upstream group: each
  // backend's certificate carries it besides its own.
  if (self.role === 'backend') return [t.services.ingestTlsName, ...lanAddresses]
  return lanAddresses
}

/**
 * A host's certificate subject. A backend's CN is the database user it logs in as:
 * PostgreSQL 15 compares the CN with the user under clientcert=verify-full (a name map
 * needs the cert method, which drops the password); OU says which backend it is.
 */
export function subjectOf(t: Plan, host: string): string {
  const self = t.hosts.find((h) => h.name === host)!
  return self.role === 'backend'
    ? `O=${t.name}, OU=${tlsIdentity(t, host)}, CN=${DB.user}`
    : `O=${t.name}, CN=${tlsIdentity(t, host)}`
}

/** The identities a backend admits as clients: the proxies'. */
export const proxyIdentities = (t: Plan) => hostsWithRole(t, 'proxy').map((p) => tlsIdentity(t, p.name))

/**
 * The steps that give a service host its TLS identity. owner: the user the service
 * reads its key as (nginx and PostgreSQL read theirs as root and postgres). notify: the
 * handler that makes the service use new files (a reload wherever the service can).
 */
export function serviceTlsSteps(owner: string, notify: string[]): Step[] {
  const names = (ctx: Context) => [tlsIdentity(ctx.plan, ctx.self.name), ...altNames(ctx.plan, ctx.self.name)]
  return [
    directory(`Ensure ${TLS_DIR} holds the cloud services' TLS files`, { path: TLS_DIR, mode: '0755' }),
    ...certificateSteps({
      ca: 'services',
      caCert: SERVICES_CA,
      crl: SERVICES_CRL,
      key: (host) => tlsFiles(host).key,
      cert: (host) => tlsFiles(host).cert,
      owner,
      keygen: (out) => sh`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${out}`,
      publicKey: (key) => sh`openssl pkey -in ${key} -pubout`,
      issue: (ctx, p, pub) =>
        issueServiceCert(p, ctx.plan.name, ctx.self.name, pub, subjectOf(ctx.plan, ctx.self.name), names(ctx).slice(1)),
      more: (ctx, info) =>
        JSON.stringify([...info.altNames].sort()) === JSON.stringify([...new Set(names(ctx))].sort()) &&
        info.subject === subjectOf(ctx.plan, ctx.self.name),
      names: {
        ca: 'Ensure the services CA is trusted',
        crl: "Ensure the services CA's current CRL is installed",
        key: `Ensure this host has its own TLS key (0600, ${owner})`,
        cert: "Ensure the service certificate is from the services CA, for this host's own key, with its names, and not revoked",
      },
      what: 'service certificate',
      notify,
    }),
  ]
}
