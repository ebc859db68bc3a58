// Role iot-client: the IoT client (services/client) simulates the topology's devices
// on this host; each device's key is a 0600 file of the service's user. Its outbox
// lives in the unit's state folder (/var/lib/lab-client), which survives restarts and
// re-provisioning.
import { deviceKeys } from '../secrets.js'
import type { RoleModule } from './types.js'
import { MONITOR_PORTS, lanAddress } from './monitoring.js'
import { CLIENT_CONTROL_PORT, devicesOf, json, serverUrl, serviceSteps } from './telemetry.js'

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
          url: serverUrl(ctx.topology, ctx.self),
          intervalMs: ctx.topology.telemetry.intervalMs,
          concurrency: 4,
          batch: ctx.topology.telemetry.batch,
          outboxMaxMb: ctx.topology.telemetry.outboxMaxMb,
          stateDir: '/var/lib/lab-client',
          control: { address: '127.0.0.1', port: CLIENT_CONTROL_PORT },
          // GET /metrics only, on the LAN address: the monitor scrapes it through the tunnel.
          metrics: { address: lanAddress(ctx.topology, ctx.self), port: MONITOR_PORTS.client },
          devicesFile: '/etc/lab-client/devices.json',
        }),
    },
    {
      name: "Ensure this host's devices have their own keys (0600)",
      path: 'devices.json',
      notify: 'restart lab-client.service',
      content: (ctx) => json(deviceKeys(ctx.stateDir, devicesOf(ctx.topology, ctx.self.name))),
    },
  ],
})

export const iotClient: RoleModule = {
  role: { name: 'iot-client', steps: client.steps, handlers: client.handlers },
}
