// Role site-farm: one host whose charon carries many IoT sites, each with its own outer
// address, identity and LAN, against the real hub (the sites curve, npm run bench --
// --sites-curve, which adds this host to a copy of the topology). The role prepares a
// charon like a site gateway's (the data path the kernel allows, the same IKE timers,
// the lab CA trusted); the sites themselves, as many as a point of the curve asks, are
// written by the bench (scripts/bench/sites.ts), since their number is the measurement's.
import fs from 'node:fs'
import { file } from '../modules/file.js'
import { service, unitHandler, commandHandler } from '../modules/service.js'
import { ensureCa } from '../pki.js'
import type { Context, Step } from '../runner.js'
import { renderFile } from '../template.js'
import { charonSteps, ikeOnlyFrom } from './gateway.js'
import type { RoleModule } from './types.js'

const SWANCTL = '/etc/swanctl'
const KEEPER = '/usr/local/sbin/lab-farm-keeper'
const farm = (ctx: Context) => ctx.plan.siteFarm!

const steps: Step[] = [
  ...charonSteps,
  file(
    "Ensure the farm's charon has threads for its many sites",
    {
      path: '/etc/strongswan.d/lab-farm.conf',
      content: (ctx) => renderFile('site-farm/charon-threads.conf', { host: ctx.self.name, threads: 64 }),
    },
    ['restart strongswan'],
  ),
  file(
    "Ensure the farm's charon logs what a site's operator reads first, not every packet",
    {
      path: '/etc/strongswan.d/lab-farm-log.conf',
      content: (ctx) => renderFile('site-farm/charon-log.conf', { host: ctx.self.name }),
    },
    ['restart strongswan'],
  ),
  file('Ensure swanctl loads only the plugins it needs (no warnings)', {
    path: '/etc/strongswan.d/lab-clients.conf',
    content: renderFile('gateway/swanctl-plugins.conf', {}),
  }),
  file(
    'Ensure the lab CA certificate is trusted',
    {
      path: `${SWANCTL}/x509ca/lab-ca.pem`,
      content: async (ctx) => fs.readFileSync((await ensureCa(ctx.stateDir, ctx.plan.name, 'ike')).caCert, 'utf8'),
    },
    ['reload swanctl'],
  ),
  service('strongswan.service', { enabled: true, active: true }),
  file(
    "Ensure the farm's keeper is installed (one for all its sites)",
    {
      path: KEEPER,
      mode: '0755',
      content: renderFile('site-farm/lab-farm-keeper', { period_s: 2, parallel: 16, timeout_s: 2 }),
    },
    ['restart farm keeper'],
  ),
  file(
    "Ensure the farm's keeper unit",
    {
      path: '/etc/systemd/system/lab-farm-keeper.service',
      content: renderFile('site-farm/lab-farm-keeper.service', { keeper: KEEPER }),
    },
    ['restart farm keeper'],
  ),
  service('lab-farm-keeper.service', { enabled: true, active: true }),
]

export const siteFarm: RoleModule = {
  role: {
    name: 'site-farm',
    steps,
    handlers: [
      unitHandler('restart strongswan', 'restart', 'strongswan.service', { daemonReload: true }),
      commandHandler('reload swanctl', 'swanctl --load-all --noprompt >/dev/null'),
      unitHandler('restart farm keeper', 'restart', 'lab-farm-keeper.service', { daemonReload: true }),
    ],
  },

  /** Internet side: IKE and ESP from the hub only. */
  input(ctx) {
    const f = farm(ctx)
    return ikeOnlyFrom(ctx.facts.interfaceOf[f.network], [f.hubAddress])
  },
}
