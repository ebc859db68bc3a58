// Role proxy: nginx in front of the ingest servers, which it reaches over mutual TLS
// (service-tls.ts). Devices reach it through the tunnel (their site's gateway DNATs the
// old server address to it), so it admits the old server's ports only from the IoT
// sites' subnets; its status page only from the cloud LAN. The upstreams are the
// topology's backends: a change there is a reload, which nginx does gracefully (no
// connection dropped, and devices retry anyway).
import { file } from '../modules/file.js'
import { service, unitHandler } from '../modules/service.js'
import type { Context } from '../runner.js'
import { renderFile } from '../template.js'
import type { RoleModule } from './types.js'
import { MAX_BATCH_BYTES, MAX_BATCH_READINGS } from '../../services/lib/reading.js'
import { MONITOR_PORTS } from '../ports.js'
import { serviceTlsSteps, tlsFiles } from './service-tls.js'
import { MAX_BODY } from './telemetry.js'

/** The proxy service in the plan (it exists wherever a proxy host is on a LAN). */
const plannedProxy = (ctx: Context) => ctx.plan.services.proxy!
/**
 * This proxy's own address, facing the backends: its status page and exporter listen
 * there (the monitor scrapes each member); readings arrive on the service's address,
 * a pair's virtual one.
 */
const ownAddress = (ctx: Context) => plannedProxy(ctx).members.find((m) => m.host === ctx.self.name)!.address
const STATUS_PATH = '/nginx_status'
/**
 * nginx's passive health check: one failed try (an error, a timeout, a 502/503/504)
 * takes a backend out for this long. While the database is away every backend fails,
 * so for up to this long after it is back nginx answers 503 itself ("no live
 * upstreams"); devices retry (Retry-After: 1).
 */
export const UPSTREAM_FAIL_TIMEOUT_S = 3
/** How long nginx waits for a backend's /healthz (which asks the database). */
export const HEALTH_READ_TIMEOUT_S = 3

export function nginxConf(ctx: Context): string {
  const upstreams = ctx.plan.services.backends.map(({ name, address, port }) => ({ name, address, port }))
  if (upstreams.length === 0)
    throw new Error('the topology has no backend on a network with the proxy: add a host with role backend')
  const tls = ctx.plan.telemetry.cloudTls
  const f = tlsFiles(ctx.self.name)
  return renderFile('proxy/nginx.conf', {
    tls,
    scheme: tls ? 'https' : 'http',
    tls_cert: f.cert,
    tls_key: f.key,
    tls_ca: f.ca,
    tls_crl: f.crl,
    tls_name: ctx.plan.services.ingestTlsName,
    host: ctx.self.name,
    address: plannedProxy(ctx).address,
    own_address: ownAddress(ctx),
    status_path: STATUS_PATH,
    ports: plannedProxy(ctx).ports,
    backends: upstreams,
    tries: upstreams.length,
    fail_timeout: `${UPSTREAM_FAIL_TIMEOUT_S}s`,
    health_read_timeout: `${HEALTH_READ_TIMEOUT_S}s`,
    max_body: MAX_BODY,
    max_batch: `${MAX_BATCH_BYTES}`,
    batch_readings: MAX_BATCH_READINGS,
    status_port: plannedProxy(ctx).statusPort,
    status_allow: plannedProxy(ctx).statusFrom,
  })
}

export const proxy: RoleModule = {
  role: {
    name: 'proxy',
    steps: [
      // Before nginx.conf: its validation loads these files.
      ...serviceTlsSteps('root', ['reload nginx']),
      file(
        "Ensure nginx balances readings over the topology's backends",
        {
          path: '/etc/nginx/nginx.conf',
          content: nginxConf,
          validate: 'nginx -q -t -c {}',
        },
        ['reload nginx'],
      ),
      service('nginx.service', { enabled: true, active: true }),
      file(
        "Ensure nginx's exporter reads its status page and serves the monitor",
        {
          path: '/etc/default/prometheus-nginx-exporter',
          content: (ctx) =>
            renderFile('monitor/nginx-exporter.default', {
              host: ctx.self.name,
              status_port: plannedProxy(ctx).statusPort,
              status_path: STATUS_PATH,
              address: ownAddress(ctx),
              port: MONITOR_PORTS.nginx,
            }),
        },
        ['restart nginx exporter'],
      ),
      service('prometheus-nginx-exporter.service', { enabled: true, active: true }),
    ],
    handlers: [
      unitHandler('reload nginx', 'reload', 'nginx.service'),
      unitHandler('restart nginx exporter', 'restart', 'prometheus-nginx-exporter.service'),
    ],
  },
  // In a pair: nginx answers its own status page, or this member gives the address up.
  health: (ctx) => ({
    service: 'nginx',
    check: `/usr/bin/curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:${plannedProxy(ctx).statusPort}${STATUS_PATH}`,
  }),
  input: (ctx) => [
    ...plannedProxy(ctx).devicesFrom.map(
      (s) =>
        `ip saddr ${s.subnet} tcp dport { ${s.ports.join(', ')} } accept comment "IoT devices, through the tunnel"`,
    ),
    ...plannedProxy(ctx).statusFrom.map(
      (lan) =>
        `ip saddr ${lan} tcp dport ${plannedProxy(ctx).statusPort} accept comment "nginx status, from the cloud LAN"`,
    ),
  ],
}
