// What an operator does with the lab PKI, on the running lab: revoke a gateway's
// certificate (CRL to every gateway, that gateway's tunnels torn down so the revocation
// bites now, not at the next reauthentication) and reissue one (a new key made on the
// gateway, a new certificate, the tunnel back).
import fs from 'node:fs'
import path from 'node:path'
import { connectHosts } from './hosts.js'
import { ensureFileContent } from './modules/file.js'
import { certInfo, ensureCa, isRevoked, pkiPaths, revocations, revokeHost, type Revocation } from './pki.js'
import { summarize } from './report.js'
import { provision } from './run.js'
import type { RemoteHost } from './ssh.js'
import type { Topology } from './topology.js'

type Log = (m: string) => void

async function withGateways<T>(topology: Topology, repoRoot: string, fn: (name: string, host: RemoteHost) => Promise<T>): Promise<T[]> {
  const names = topology.hosts.filter((h) => h.role === 'gateway').map((h) => h.name)
  const hosts = await connectHosts(names, repoRoot)
  try {
    return await Promise.all(names.map((name) => fn(name, hosts.get(name))))
  } finally {
    await hosts.close()
  }
}

function gatewayOf(topology: Topology, name: string) {
  const h = topology.hosts.find((x) => x.name === name)
  if (!h) throw new Error(`no host ${name} in the topology`)
  if (h.role !== 'gateway') throw new Error(`${name} is a ${h.role}, not a gateway: only gateways have certificates`)
  if (topology.vpn?.auth === 'psk') throw new Error('the topology uses vpn.auth: psk; there are no certificates to manage')
  return h
}

export async function revoke(topology: Topology, name: string, opts: { stateDir: string; repoRoot: string; log: Log }): Promise<Revocation> {
  gatewayOf(topology, name)
  const p = await ensureCa(opts.stateDir, topology.name)
  const entry = await revokeHost(p, name)
  opts.log(`Revoked ${name}'s certificate (serial ${entry.serial}); the CRL now lists ${revocations(p).length} certificate(s)`)
  const crl = fs.readFileSync(p.crl, 'utf8')
  const tunnels = (topology.vpn?.tunnels ?? []).filter((t) => t.site === name || t.hub === name).map((t) => t.name)
  await withGateways(topology, opts.repoRoot, async (gw, host) => {
    await ensureFileContent({ host, dryRun: false }, { path: '/etc/swanctl/x509crl/lab.crl', content: crl })
    await host.exec('swanctl --load-creds --clear --noprompt >/dev/null')
    for (const t of tunnels) await host.exec(`swanctl --terminate --ike ${t} --timeout 5 >/dev/null 2>&1`, { check: false })
    opts.log(`  ${gw}: CRL loaded${tunnels.length ? `, tunnel(s) ${tunnels.join(', ')} terminated` : ''}`)
  })
  return entry
}

export async function reissue(topology: Topology, name: string, opts: { stateDir: string; repoRoot: string; log: Log }): Promise<void> {
  gatewayOf(topology, name)
  await withGateways(topology, opts.repoRoot, async (gw, host) => {
    if (gw === name) await host.exec(`rm -f /etc/swanctl/private/${name}.key /etc/swanctl/x509/${name}.pem`)
  })
  opts.log(`Removed ${name}'s key and certificate; provisioning it makes a new key there and a new certificate`)
  const recaps = await provision({ topology, only: [name], repoRoot: opts.repoRoot, stateDir: opts.stateDir })
  const s = summarize(recaps)
  if (s.failed + s.unreachable) throw new Error(`provisioning ${name} failed: run \`npm run provision -- ${name}\` to see why`)
  const info = await certInfo(pkiPaths(opts.stateDir), fs.readFileSync(path.join(pkiPaths(opts.stateDir).dir, 'certs', `${name}.pem`), 'utf8'))
  opts.log(`Issued ${name} a new certificate (serial ${info.serial}, valid until ${info.notAfter.toISOString().slice(0, 10)})`)
}

export async function status(topology: Topology, stateDir: string): Promise<string> {
  const p = pkiPaths(stateDir)
  if (!fs.existsSync(p.caCert)) return `No lab CA yet: it is made by the first \`npm run provision\` (in ${p.dir}).`
  const lines = [`CA: ${p.caCert} (key ${p.caKey}, mode 0600, never copied to a host)`, `CRL: ${p.crl}, ${revocations(p).length} revoked`]
  for (const h of topology.hosts.filter((x) => x.role === 'gateway')) {
    const f = path.join(p.dir, 'certs', `${h.name}.pem`)
    if (!fs.existsSync(f)) { lines.push(`${h.name}: no certificate issued yet`); continue }
    const info = await certInfo(p, fs.readFileSync(f, 'utf8'))
    const revoked = isRevoked(p, info.serial)
    lines.push(`${h.name}: serial ${info.serial}, until ${info.notAfter.toISOString().slice(0, 10)}${revoked ? ', REVOKED' : ''}`)
  }
  return lines.join('\n')
}
