// Role backend: the ingest server (services/ingest), one per backend host, behind the
// proxy. It admits HTTP from the proxy alone; its device keys and database password
// are 0600 files of its own user. New device keys are picked up by a reload (SIGHUP).
import { deviceKeys, dbPassword } from '../secrets.js'
import type { Context } from '../runner.js'
import { benchDeviceIds, hostsWithRole } from '../topology.js'
import type { RoleModule } from './index.js'
import { DB, addressFacing, backends, dbAddress, json, serviceSteps } from './telemetry.js'

/** Where this backend listens: the address the proxy's upstream list has for it. */
const listenAddress = (ctx: Context) => {
  const a = backends(ctx.topology).find((b) => b.name === ctx.self.name)?.address
  if (!a) throw new Error(`backend ${ctx.self.name} shares no network with a proxy host: put both on the cloud LAN in the topology`)
  return a
}

const ingest = serviceSteps({
  service: 'ingest',
  description: 'Lab ingest server: signed readings into PostgreSQL, once each',
  files: [
    {
      name: 'Ensure the ingest server\'s config (database password included) is 0600',
      path: 'config.json',
      notify: 'restart lab-ingest.service',
      content: (ctx) => {
        const host = dbAddress(ctx.topology)
        if (!host) throw new Error('the topology has no db host on a network with the backends')
        return json({
          backend: ctx.self.name,
          listen: { address: listenAddress(ctx), port: ctx.topology.telemetry.port },
          db: { host, port: DB.port, database: DB.name, user: DB.user, password: dbPassword(ctx.stateDir) },
          keysFile: '/etc/lab-ingest/devices.json',
          poolSize: 8,
          // Group commit: the readings that arrive during a commit go in the next one.
          batch: { maxBatch: 200, maxInFlight: 2 },
        })
      },
    },
    {
      name: 'Ensure every device\'s key is known (0600), the load generator\'s too',
      path: 'devices.json',
      notify: 'reload lab-ingest.service',
      content: (ctx) => json(deviceKeys(ctx.stateDir, [...ctx.topology.telemetry.devices.map((d) => d.id), ...benchDeviceIds(ctx.topology)])),
    },
  ],
})

export const backend: RoleModule = {
  role: { name: 'backend', steps: ingest.steps, handlers: ingest.handlers },
  input: (ctx) => {
    const proxies = hostsWithRole(ctx.topology, 'proxy').map((p) => addressFacing(p, ctx.self)).filter(Boolean)
    return proxies.length ? [`ip saddr { ${proxies.join(', ')} } tcp dport ${ctx.topology.telemetry.port} accept comment "ingest: from the proxy only"`] : []
  },
}
