// Role iot-client: the IoT client (services/client) simulates the topology's devices
// on this host; each device's key is a 0600 file of the service's user. Its outbox
// lives in the unit's state folder (/var/lib/lab-client), which survives restarts and
// re-provisioning.
import { deviceKeys } from '../secrets.js'
import type { RoleModule } from './types.js'
import { clientOf } from '../plan.js'
import { CLIENT_CONTROL_PORT, MONITOR_PORTS } from '../ports.js'
import type { Context } from '../runner.js'
import { json, serviceSteps } from './telemetry.js'

/** This client in the plan: where it sends, and its devices. */
function self(ctx: Context) {
  const c = clientOf(ctx.plan, ctx.self.name)
  if (!c?.url)
    throw new Error(`${ctx.self.name} has nowhere to send readings: give its LAN an old_server, or add a proxy`)
  return c
}

const client = serviceSteps({
  service: 'client',
  description: 'Lab IoT client: simulated devices, durable outbox, signed readings',
  state: true,
  files: [
    {
      name: "Ensure the client's config names its server, interval and devices",
      path: 'config.json',
      notify: 'restart lab-client.service',
      content: (ctx) =>
        json({
          url: self(ctx).url,
          intervalMs: ctx.plan.telemetry.intervalMs,
          concurrency: 4,
          batch: ctx.plan.telemetry.batch,
          outboxMaxMb: ctx.plan.telemetry.outboxMaxMb,
          stateDir: '/var/lib/lab-client',
          control: { address: '127.0.0.1', port: CLIENT_CONTROL_PORT },
          // GET /metrics only, on the LAN address: the monitor scrapes it through the tunnel.
          metrics: { address: ctx.self.lanAddress, port: MONITOR_PORTS.client },
          devicesFile: '/etc/lab-client/devices.json',
        }),
    },
    {
      name: "Ensure this host's devices have their own keys (0600)",
      path: 'devices.json',
      notify: 'restart lab-client.service',
      content: (ctx) => json(deviceKeys(ctx.stateDir, self(ctx).devices)),
    },
  ],
})

export const iotClient: RoleModule = {
  role: { name: 'iot-client', steps: client.steps, handlers: client.handlers },
}
