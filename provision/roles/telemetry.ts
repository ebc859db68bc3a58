// What the telemetry roles (proxy, backend, db, iot-client) derive from the topology,
// in one place: who talks to whom, on which address; and the steps that deploy one
// of the bundled services as a hardened systemd unit.
import { bundle, type ServiceName } from '../../services/build.js'
import { MAX_BODY_BYTES } from '../../services/lib/reading.js'
import { directory, file } from '../modules/file.js'
import { service, unitHandler } from '../modules/service.js'
import { systemUser } from '../modules/user.js'
import type { Context, Handler, Step } from '../runner.js'
import { renderFile } from '../template.js'
import { hostsWithRole, type Host, type Topology } from '../topology.js'

export const DB = { name: 'telemetry', user: 'ingest', port: 5432 }
export const PROXY_STATUS_PORT = 8081
// Not 9100: that is node exporter's port, on every host.
export const CLIENT_CONTROL_PORT = 9180
export const MAX_BODY = `${MAX_BODY_BYTES}`

/** A host's address on the first network it shares with another host. */
export function addressFacing(host: Host, peer: Host): string | undefined {
  return host.interfaces.find(
    (i) => i.network !== host.mgmt.network && peer.interfaces.some((j) => j.network === i.network),
  )?.address
}

const proxyOf = (t: Topology) => hostsWithRole(t, 'proxy')[0]
const dbOf = (t: Topology) => hostsWithRole(t, 'db')[0]

/** Each backend with the address the proxy reaches it on. */
export function backends(t: Topology): { name: string; address: string; port: number }[] {
  const proxy = proxyOf(t)
  return hostsWithRole(t, 'backend').flatMap((b) => {
    const address = proxy ? addressFacing(b, proxy) : undefined
    return address ? [{ name: b.name, address, port: t.telemetry.port }] : []
  })
}

export const proxyAddress = (t: Topology) => {
  const p = proxyOf(t)
  const b = hostsWithRole(t, 'backend')[0]
  return p && (b ? addressFacing(p, b) : p.interfaces.find((i) => i.network !== p.mgmt.network)?.address)
}

/** The database's address as the backends see it. */
export function dbAddress(t: Topology): string | undefined {
  const db = dbOf(t)
  const b = hostsWithRole(t, 'backend')[0]
  return db && b ? addressFacing(db, b) : undefined
}

/** Where an IoT client sends readings: telemetry.server if set, else its LAN's old server address, as devices always did. */
export function serverUrl(t: Topology, client: Host): string {
  if (t.telemetry.server) return `http://${t.telemetry.server}/readings`
  const lan = t.networks.find((n) => n.oldServer && client.interfaces.some((i) => i.network === n.name))
  if (lan) return `http://${lan.oldServer!.address}:${lan.oldServer!.ports[0]}/readings`
  const proxy = proxyAddress(t)
  if (!proxy) throw new Error(`${client.name} has nowhere to send readings: give its LAN an old_server, or add a proxy`)
  return `http://${proxy}/readings`
}

export const devicesOf = (t: Topology, host: string) =>
  t.telemetry.devices.filter((d) => d.host === host).map((d) => d.id)

/** The steps that run a bundled service: its user, its code, its config (0600), its unit. */
export function serviceSteps(spec: {
  service: ServiceName
  description: string
  state?: boolean
  /** Steps that need the service's user and come before its files (its TLS identity). */
  identity?: Step[]
  files: { name: string; path: string; content: (ctx: Context) => string | Promise<string>; notify: string }[]
}): { steps: Step[]; handlers: Handler[] } {
  const unit = `lab-${spec.service}.service`
  const user = `lab-${spec.service}`
  const bundlePath = `/usr/local/lib/lab/lab-${spec.service}.cjs`
  const confDir = `/etc/lab-${spec.service}`
  const steps: Step[] = [
    systemUser(user),
    ...(spec.identity ?? []),
    file(
      `Ensure the ${spec.service} service's code is the current bundle`,
      { path: bundlePath, content: () => bundle(spec.service) },
      [`restart ${unit}`],
    ),
    directory(`Ensure ${confDir} is readable by ${user} only`, { path: confDir, mode: '0700', owner: user }),
    ...spec.files.map((f) =>
      file(f.name, { path: `${confDir}/${f.path}`, mode: '0600', owner: user, content: f.content }, [f.notify]),
    ),
    file(
      `Ensure the ${unit} unit is hardened and restarts on failure`,
      {
        path: `/etc/systemd/system/${unit}`,
        content: renderFile('services/lab-service.service', {
          description: spec.description,
          user,
          bundle: bundlePath,
          config: `${confDir}/config.json`,
          state: spec.state ?? false,
        }),
      },
      [`restart ${unit}`],
    ),
    service(unit, { enabled: true, active: true }),
  ]
  const handlers: Handler[] = [
    unitHandler(`reload ${unit}`, 'reload', unit),
    unitHandler(`restart ${unit}`, 'restart', unit, { daemonReload: true }),
  ]
  return { steps, handlers }
}

export const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n'
