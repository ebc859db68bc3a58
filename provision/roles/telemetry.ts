// The steps that deploy one of the bundled services (the telemetry roles: proxy,
// backend, iot-client) as a hardened systemd unit. Who talks to whom on which address
// is the plan's (plan.ts services).
import { bundle, type ServiceName } from '../../services/build.js'
import { MAX_BODY_BYTES } from '../../services/lib/reading.js'
import { directory, file } from '../modules/file.js'
import { service, unitHandler } from '../modules/service.js'
import { systemUser } from '../modules/user.js'
import type { Context, Handler, Step } from '../runner.js'
import { renderFile } from '../template.js'

export const MAX_BODY = `${MAX_BODY_BYTES}`

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
  const handlers: Handler[] = [
    unitHandler(`reload ${unit}`, 'reload', unit),
    unitHandler(`restart ${unit}`, 'restart', unit, { daemonReload: true }),
  ]
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
    // A start reads the bundle, the unit and every file: its reload or restart notified
    // before it is moot. The reload (SIGHUP) also raced the start: 90 ms after it,
    // `kill -HUP $MAINPID` failed with "Operation not permitted" and failed the
    // provision of a backend (7 Dec 2026, the single topology's first bring-up, once
    // handlers ran at the end of their own role).
    service(unit, { enabled: true, active: true, startMoots: handlers.map((h) => h.name) }),
  ]
  return { steps, handlers }
}

export const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n'
