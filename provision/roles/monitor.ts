// Role monitor: Prometheus from Debian's package, its scrape configuration generated
// from the topology (monitoring.ts), the lab's alert rules, and the console page a
// person opens (consoles/lab.html). The provisioning machine reads it on the
// management network (port 9090, from its own address only): `npm run lab:status`
// and a browser.
import { file } from '../modules/file.js'
import { service, unitHandler } from '../modules/service.js'
import type { Context } from '../runner.js'
import { renderFile, templateText } from '../template.js'
import type { RoleModule } from './types.js'
import { managementNetwork } from '../plan.js'
import { MONITOR_PORTS } from '../ports.js'
import { SCRAPE_INTERVAL_S } from './monitoring.js'

export function prometheusConfig(ctx: Context): string {
  const targets = ctx.plan.services.scrapeTargets
  const jobs = [...new Set(targets.map((x) => x.job))].map((job) => ({
    job,
    // One static_configs entry per target, so that each carries its host and role.
    targets: targets
      .filter((x) => x.job === job)
      .map((x) => {
        const address =
          x.host === ctx.self.name && job === 'prometheus' ? `127.0.0.1:${x.port}` : `${x.address}:${x.port}`
        return `      - targets: ['${address}']\n        labels: { host: ${x.host}, role: ${x.role} }`
      })
      .join('\n'),
  }))
  return renderFile('monitor/prometheus.yml', {
    host: ctx.self.name,
    lab: ctx.plan.name,
    interval: SCRAPE_INTERVAL_S,
    jobs,
  })
}

/** The management network's address of the provisioning machine (lxc); on VMs, the libvirt network's. */
const provisioner = (ctx: Context) => managementNetwork(ctx.plan).hostAddress

export const monitor: RoleModule = {
  role: {
    name: 'monitor',
    steps: [
      file(
        'Ensure Prometheus scrapes every host the topology has',
        {
          path: '/etc/prometheus/prometheus.yml',
          content: prometheusConfig,
          validate: 'promtool check config --syntax-only {} >/dev/null',
        },
        ['reload prometheus'],
      ),
      file(
        "Ensure the lab's alert rules are loaded",
        {
          path: '/etc/prometheus/lab-alerts.yml',
          content: () => templateText('monitor/alerts.yml'),
          validate: 'promtool check rules {} >/dev/null',
        },
        ['reload prometheus'],
      ),
      file("Ensure the lab's console library", {
        path: '/etc/prometheus/console_libraries/lab.lib',
        content: () => templateText('monitor/lab.lib'),
      }),
      file("Ensure the lab's console page", {
        path: '/etc/prometheus/consoles/lab.html',
        content: () => templateText('monitor/lab.html'),
      }),
      file(
        "Ensure Prometheus's flags: the lab's consoles, two days of data",
        {
          path: '/etc/default/prometheus',
          content: (ctx) =>
            renderFile('monitor/prometheus.default', { host: ctx.self.name, port: MONITOR_PORTS.prometheus }),
        },
        ['restart prometheus'],
      ),
      service('prometheus.service', { enabled: true, active: true }),
    ],
    handlers: [
      unitHandler('reload prometheus', 'reload', 'prometheus.service'),
      unitHandler('restart prometheus', 'restart', 'prometheus.service'),
    ],
  },
  input: (ctx) => {
    const from = provisioner(ctx)
    return from
      ? [
          `iifname "${ctx.facts.mgmtInterface}" ip saddr ${from} tcp dport ${MONITOR_PORTS.prometheus} accept comment "Prometheus and its console, for the provisioning machine"`,
        ]
      : []
  },
}
