// What an operator does with the lab PKI, on the running lab.
// - A gateway (the IKE CA): revoke its certificate (CRL to every gateway, its tunnels
//   torn down so the revocation bites now, not at the next reauthentication); reissue
//   (a new key made on the gateway, a new certificate, the tunnel back).
// - A cloud service, proxy, backend or database (the services CA): revoke (CRL to every
//   service host, each reloads it; PostgreSQL ends the sessions opened with the revoked
//   certificate, nginx's reload drops its kept-alive connections, a backend closes its
//   connections after their current request); reissue (a new key made on the host, a new
//   certificate, a reload: no restart, no reading lost).
import fs from 'node:fs'
import { connectHosts } from './hosts.js'
import { ensureFileContent } from './modules/file.js'
import {
  certInfo,
  ensureCa,
  isRevoked,
  issuedCert,
  pkiPaths,
  revocations,
  revokeHost,
  type CaKind,
  type Revocation,
} from './pki.js'
import { summarize } from './report.js'
import { endRevokedSessions } from './roles/db.js'
import { TLS_ROLES, isServiceRole, tlsFiles } from './roles/service-tls.js'
import { provision } from './run.js'
import { sh, type RemoteHost } from './ssh.js'
import type { Plan } from './plan.js'

type Log = (m: string) => void

/** How each service makes a new CRL or certificate bite. */
const RELOAD: Record<string, (serials: string[]) => string> = {
  proxy: () => 'systemctl reload nginx.service',
  backend: () => 'systemctl reload lab-ingest.service',
  db: endRevokedSessions,
}

async function withHosts<T>(
  plan: Plan,
  repoRoot: string,
  roles: readonly string[],
  fn: (name: string, host: RemoteHost) => Promise<T>,
): Promise<T[]> {
  const chosen = plan.hosts.filter((h) => roles.includes(h.role))
  const names = chosen.map((h) => h.name)
  const hosts = await connectHosts(chosen, repoRoot)
  try {
    return await Promise.all(names.map((name) => fn(name, hosts.get(name))))
  } finally {
    await hosts.close()
  }
}

/** Which CA a host's certificate comes from; an error naming the hosts that have one, if none. */
export function caOf(plan: Plan, name: string): CaKind {
  const h = plan.hosts.find((x) => x.name === name)
  if (!h) throw new Error(`no host ${name} in the topology`)
  if (isServiceRole(h.role)) return 'services'
  if (h.role !== 'gateway')
    throw new Error(
      `${name} is a ${h.role}: only gateways (IKE) and the cloud services (${TLS_ROLES.join(', ')}: TLS) have certificates`,
    )
  if (plan.vpn?.auth === 'psk')
    throw new Error('the topology uses vpn.auth: psk; the gateways have no certificates to manage')
  return 'ike'
}

export async function revoke(
  plan: Plan,
  name: string,
  opts: { stateDir: string; repoRoot: string; log: Log },
): Promise<Revocation> {
  const kind = caOf(plan, name)
  const p = await ensureCa(opts.stateDir, plan.name, kind)
  const entry = await revokeHost(p, name)
  opts.log(
    `Revoked ${name}'s ${kind === 'ike' ? 'IKE' : 'service'} certificate (serial ${entry.serial}); the ${kind} CA's CRL now lists ${revocations(p).length} certificate(s)`,
  )
  const crl = fs.readFileSync(p.crl, 'utf8')
  if (kind === 'services') {
    const serials = revocations(p).map((r) => r.serial)
    await withHosts(plan, opts.repoRoot, TLS_ROLES, async (svc, host) => {
      const role = plan.hosts.find((h) => h.name === svc)!.role
      await ensureFileContent({ host, dryRun: false }, { path: tlsFiles(svc).crl, content: crl })
      await host.exec(RELOAD[role](serials))
      opts.log(
        `  ${svc}: CRL loaded (${role === 'db' ? 'sessions on the revoked certificate ended' : 'connections made before end'})`,
      )
    })
    return entry
  }
  // The SAs the revoked certificate authenticated end now: a site's on both ends; a single
  // hub's, every tunnel's; a hub pair's member's, only its own (the other member's SAs
  // stand, and the revoked member's health check gives the hub's addresses to it).
  const cutOn = (gw: string) =>
    (plan.vpn?.tunnels ?? [])
      .filter((t) => t.site === name || (t.hubMembers.includes(name) && (t.hubMembers.length === 1 || gw === name)))
      .map((t) => t.name)
  await withHosts(plan, opts.repoRoot, ['gateway'], async (gw, host) => {
    await ensureFileContent({ host, dryRun: false }, { path: '/etc/swanctl/x509crl/lab.crl', content: crl })
    await host.exec('swanctl --load-creds --clear --noprompt >/dev/null')
    const tunnels = cutOn(gw)
    for (const t of tunnels)
      await host.exec(sh`swanctl --terminate --ike ${t} --timeout 5 >/dev/null 2>&1`, { check: false })
    opts.log(`  ${gw}: CRL loaded${tunnels.length ? `, tunnel(s) ${tunnels.join(', ')} terminated` : ''}`)
  })
  return entry
}

export async function reissue(
  plan: Plan,
  name: string,
  opts: { stateDir: string; repoRoot: string; log: Log },
): Promise<void> {
  const kind = caOf(plan, name)
  const files =
    kind === 'ike'
      ? [`/etc/swanctl/private/${name}.key`, `/etc/swanctl/x509/${name}.pem`]
      : [tlsFiles(name).key, tlsFiles(name).cert]
  await withHosts(plan, opts.repoRoot, [plan.hosts.find((h) => h.name === name)!.role], async (h, host) => {
    if (h === name) await host.exec(sh`rm -f ${files}`)
  })
  opts.log(
    `Removed ${name}'s key and certificate; provisioning it makes a new key there and a new certificate${kind === 'services' ? ', and reloads the service' : ''}`,
  )
  const recaps = await provision({ plan, only: [name], repoRoot: opts.repoRoot, stateDir: opts.stateDir })
  const s = summarize(recaps)
  if (s.failed + s.unreachable)
    throw new Error(`provisioning ${name} failed: run \`npm run provision -- ${name}\` to see why`)
  const p = pkiPaths(opts.stateDir, kind)
  const info = await certInfo(p, issuedCert(p, name)!)
  opts.log(
    `Issued ${name} a new certificate (serial ${info.serial}, valid until ${info.notAfter.toISOString().slice(0, 10)})`,
  )
}

export async function status(plan: Plan, stateDir: string): Promise<string> {
  const lines: string[] = []
  const sections: [CaKind, string, readonly string[]][] = [
    ['ike', 'IKE CA (gateways)', ['gateway']],
    ['services', 'Services CA (TLS inside the cloud)', TLS_ROLES],
  ]
  for (const [kind, title, roles] of sections) {
    const p = pkiPaths(stateDir, kind)
    if (lines.length) lines.push('')
    lines.push(`${title}:`)
    if (!fs.existsSync(p.caCert)) {
      lines.push(`  not made yet: the first \`npm run provision\` makes it (in ${p.dir})`)
      continue
    }
    lines.push(
      `  CA: ${p.caCert} (key ${p.caKey}, mode 0600, never copied to a host)`,
      `  CRL: ${p.crl}, ${revocations(p).length} revoked`,
    )
    for (const h of plan.hosts.filter((x) => roles.includes(x.role))) {
      const cert = issuedCert(p, h.name)
      if (!cert) {
        lines.push(`  ${h.name}: no certificate issued yet`)
        continue
      }
      const info = await certInfo(p, cert)
      const revoked = isRevoked(p, info.serial)
      lines.push(
        `  ${h.name}: serial ${info.serial}, until ${info.notAfter.toISOString().slice(0, 10)}, ${info.altNames.join(', ')}${revoked ? ', REVOKED' : ''}`,
      )
    }
  }
  return lines.join('\n')
}
