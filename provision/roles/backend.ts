// Role backend: the ingest server (services/ingest), one per backend host, behind the
// proxy. Its readings port speaks mutual TLS and admits the proxy alone (the firewall,
// and a client certificate naming the proxy); it reaches PostgreSQL over TLS too, with
// its own certificate and the password. Counters and health are on a plain port for the
// monitor. Device keys and the database password are 0600 files of its own user. New
// device keys, certificates and CRLs are picked up by a reload (SIGHUP), no restart.
import { deviceKeys, dbPassword } from '../secrets.js'
import type { Context } from '../runner.js'
import { benchDeviceIds } from '../plan.js'
import { DB, MONITOR_PORTS } from '../ports.js'
import type { RoleModule } from './types.js'
import { proxyIdentities, serviceTlsSteps, tlsFiles } from './service-tls.js'
import { json, serviceSteps } from './telemetry.js'

/** This backend in the plan: where it listens (the address in the proxy's upstream list), and whom it admits. */
const planned = (ctx: Context) => ctx.plan.services.backends.find((x) => x.name === ctx.self.name)
const self = (ctx: Context) => {
  const b = planned(ctx)
  if (!b)
    throw new Error(
      `backend ${ctx.self.name} shares no network with a proxy host: put both on the cloud LAN in the topology`,
    )
  return b
}

const ingest = serviceSteps({
  service: 'ingest',
  description: 'Lab ingest server: signed readings into PostgreSQL, once each',
  identity: serviceTlsSteps('lab-ingest', ['reload lab-ingest.service']),
  files: [
    {
      name: "Ensure the ingest server's config (database password included) is 0600",
      path: 'config.json',
      notify: 'restart lab-ingest.service',
      content: (ctx) => {
        const host = ctx.plan.services.db?.address
        if (!host) throw new Error('the topology has no db host on a network with the backends')
        const f = tlsFiles(ctx.self.name)
        const tls = ctx.plan.telemetry.cloudTls
        return json({
          backend: ctx.self.name,
          listen: { address: self(ctx).address, port: self(ctx).port },
          // The proxy's certificate, and no other, opens the readings port.
          ...(tls
            ? { tls: { cert: f.cert, key: f.key, ca: f.ca, crl: f.crl, clients: proxyIdentities(ctx.plan) } }
            : {}),
          monitoring: { address: self(ctx).address, port: MONITOR_PORTS.ingest },
          // verify-full: the database's certificate from the services CA, not revoked, for
          // the address connected to; this backend's own certificate as the client's.
          db: {
            host,
            port: DB.port,
            database: DB.name,
            user: DB.user,
            password: dbPassword(ctx.stateDir),
            ...(tls ? { tls: { cert: f.cert, key: f.key, ca: f.ca, crl: f.crl } } : {}),
          },
          keysFile: '/etc/lab-ingest/devices.json',
          poolSize: 8,
          // Group commit: the readings that arrive during a commit go in the next one.
          batch: { maxBatch: 200, maxInFlight: 2 },
        })
      },
    },
    {
      name: "Ensure every device's key is known (0600), the load generator's too",
      path: 'devices.json',
      notify: 'reload lab-ingest.service',
      content: (ctx) =>
        json(deviceKeys(ctx.stateDir, [...ctx.plan.telemetry.devices.map((d) => d.id), ...benchDeviceIds(ctx.plan)])),
    },
  ],
})

export const backend: RoleModule = {
  role: { name: 'backend', steps: ingest.steps, handlers: ingest.handlers },
  input: (ctx) => {
    const proxies = planned(ctx)?.from ?? []
    return proxies.length
      ? [
          `ip saddr { ${proxies.join(', ')} } tcp dport ${ctx.plan.telemetry.port} accept comment "ingest: from the proxy only"`,
        ]
      : []
  },
}
