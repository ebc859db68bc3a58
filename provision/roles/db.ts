// Role db: PostgreSQL, listening on the cloud LAN only, admitting the backends alone
// (pg_hba and nftables) over TLS, each with its own certificate from the services CA and
// the password, with the readings table and the ingest role created by the
// provisioner. The role's password is generated here and checked against the
// server's SCRAM verifier, so a second provision neither changes nor reveals it.
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto'
import { converge } from '../modules/command.js'
import { file } from '../modules/file.js'
import { service, unitHandler } from '../modules/service.js'
import { dbPassword } from '../secrets.js'
import type { Context } from '../runner.js'
import { renderFile, templateText } from '../template.js'
import type { RoleModule } from './types.js'
import { DB, MONITOR_PORTS } from '../ports.js'
import { serviceTlsSteps, tlsFiles } from './service-tls.js'
import { pkiPaths, revocations } from '../pki.js'

/** The cluster's config folder, e.g. /etc/postgresql/15/main (Debian's layout). */
async function clusterDir(ctx: Context): Promise<string> {
  const r = await ctx.host.exec('ls -d /etc/postgresql/*/main | sort -V | tail -1', { check: false })
  const dir = r.stdout.trim()
  if (!dir)
    throw new Error(
      `${ctx.self.name} has no PostgreSQL cluster under /etc/postgresql: is the postgresql package installed?`,
    )
  return dir
}

/** The database service in the plan: the backends' addresses, and this member's own. */
const backendAddresses = (ctx: Context) => ctx.plan.services.db?.clients ?? []
const listenAddress = (ctx: Context) => {
  const me = ctx.plan.services.db?.members.find((m) => m.host === ctx.self.name)
  if (!me) throw new Error(`${ctx.self.name} has role db but no LAN address to serve the backends on`)
  return me.address
}

/** Does this password match a SCRAM-SHA-256 verifier (RFC 5802, PostgreSQL's format)? */
export function scramMatches(verifier: string, password: string): boolean {
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier.trim())
  if (!m) return false
  const salted = pbkdf2Sync(password, Buffer.from(m[2], 'base64'), Number(m[1]), 32, 'sha256')
  const storedKey = createHash('sha256')
    .update(createHmac('sha256', salted).update('Client Key').digest())
    .digest('base64')
  const serverKey = createHmac('sha256', salted).update('Server Key').digest('base64')
  return storedKey === m[3] && serverKey === m[4]
}

const schemaVersion = () => createHash('sha256').update(templateText('db/schema.sql')).digest('hex').slice(0, 12)
const psql = (db: string, sql: string) => `runuser -u postgres -- psql -X -At -d ${db} -c "${sql}"`

/** pg_stat_ssl's client_serial is a decimal number; the PKI writes hex with colons. */
export const decimalSerial = (hex: string) => BigInt(`0x${hex.replace(/:/g, '')}`).toString()

/** SQL for the sessions that logged in with a revoked certificate. */
const revokedSessions = (serials: string[]) =>
  `SELECT pid FROM pg_stat_ssl WHERE client_serial IN (${serials.map(decimalSerial).join(', ')})`

/**
 * The shell command that makes a revocation bite: the CRL reloaded first, then the
 * sessions opened with a revoked certificate ended (the backend reconnects, and is
 * refused). The provision's step and `npm run pki -- revoke` both run it.
 */
export const endRevokedSessions = (serials: string[]) =>
  `systemctl reload postgresql.service && sleep 1 && ${psql('postgres', `SELECT pg_terminate_backend(pid) FROM (${revokedSessions(serials)}) s`)} >/dev/null && sleep 0.5`

const revokedSerials = (ctx: Context) => revocations(pkiPaths(ctx.stateDir, 'services')).map((r) => r.serial)

export const db: RoleModule = {
  role: {
    name: 'db',
    steps: [
      // Before the config that names these files.
      ...serviceTlsSteps('postgres', ['reload postgresql']),
      {
        name: 'Ensure PostgreSQL listens on the cloud LAN only, with TLS',
        notify: ['restart postgresql'],
        run: async (ctx) =>
          file('', {
            path: `${await clusterDir(ctx)}/conf.d/lab.conf`,
            content: renderFile('db/postgresql.conf', {
              host: ctx.self.name,
              address: listenAddress(ctx),
              port: DB.port,
              ...Object.fromEntries(Object.entries(tlsFiles(ctx.self.name)).map(([k, v]) => [`tls_${k}`, v])),
            }),
          }).run(ctx),
      },
      {
        name: 'Ensure pg_hba.conf admits the backends alone, over TLS with their certificates and the password',
        notify: ['reload postgresql'],
        run: async (ctx) =>
          file('', {
            path: `${await clusterDir(ctx)}/pg_hba.conf`,
            mode: '0640',
            owner: 'postgres',
            content: pgHbaConf(ctx),
          }).run(ctx),
      },
      service('postgresql.service', { enabled: true, active: true }),
      // postgresql.service is an umbrella that stays active when its cluster failed to
      // start (a bad config an earlier run left): the cluster itself must be online.
      converge(
        'Ensure the PostgreSQL cluster is online',
        async (ctx) =>
          (await ctx.host.exec('pg_lsclusters -h', { check: false })).stdout.trim().split(/\s+/)[3] === 'online',
        async (ctx) => {
          await ctx.host.exec('systemctl restart postgresql.service && sleep 1')
        },
      ),
      // A CRL stops new logins; a session that began before it would go on. The CRL is
      // loaded first (a reload), then those sessions end: the backend reconnects, and
      // is refused if its certificate is the revoked one.
      converge(
        'Ensure no session runs on a revoked certificate',
        async (ctx) => {
          const serials = revokedSerials(ctx)
          if (!serials.length) return true
          return (await ctx.host.exec(psql('postgres', revokedSessions(serials)))).stdout.trim() === ''
        },
        async (ctx) => {
          await ctx.host.exec(endRevokedSessions(revokedSerials(ctx)))
        },
      ),
      converge(
        'Ensure the readings table, and the ingest role with its generated password',
        async (ctx) => {
          const pw = await ctx.host.exec(
            psql('postgres', `SELECT rolpassword FROM pg_authid WHERE rolname = '${DB.user}'`),
            { check: false },
          )
          if (pw.code !== 0 || !scramMatches(pw.stdout, dbPassword(ctx.stateDir))) return false
          const v = await ctx.host.exec(psql(DB.name, "SELECT obj_description('readings'::regclass)"), { check: false })
          return v.code === 0 && v.stdout.trim() === `lab schema ${schemaVersion()}`
        },
        async (ctx) => {
          const sql = renderFile('db/schema.sql', {
            user: DB.user,
            database: DB.name,
            password: dbPassword(ctx.stateDir),
            version: schemaVersion(),
          })
          await ctx.host.exec('runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -f -', { stdin: sql })
        },
      ),
      // The exporter logs in as the role prometheus over the local socket (peer: the
      // exporter runs as the system user prometheus): statistics only, no password.
      converge(
        'Ensure the monitoring role prometheus (pg_monitor, no password)',
        async (ctx) =>
          (
            await ctx.host.exec(
              psql(
                'postgres',
                "SELECT pg_has_role('prometheus', 'pg_monitor', 'member') FROM pg_roles WHERE rolname = 'prometheus'",
              ),
              { check: false },
            )
          ).stdout.trim() === 't',
        async (ctx) => {
          const exists =
            (
              await ctx.host.exec(psql('postgres', "SELECT 1 FROM pg_roles WHERE rolname = 'prometheus'"))
            ).stdout.trim() === '1'
          if (!exists) await ctx.host.exec(psql('postgres', 'CREATE ROLE prometheus LOGIN'))
          await ctx.host.exec(psql('postgres', 'GRANT pg_monitor TO prometheus'))
        },
      ),
      file(
        "Ensure PostgreSQL's exporter serves the monitor",
        {
          path: '/etc/default/prometheus-postgres-exporter',
          content: (ctx) =>
            renderFile('monitor/postgres-exporter.default', {
              host: ctx.self.name,
              address: listenAddress(ctx),
              port: MONITOR_PORTS.postgres,
            }),
        },
        ['restart postgres exporter'],
      ),
      service('prometheus-postgres-exporter.service', { enabled: true, active: true }),
    ],
    handlers: [
      unitHandler('reload postgresql', 'reload', 'postgresql.service'),
      unitHandler('restart postgresql', 'restart', 'postgresql.service'),
      unitHandler('restart postgres exporter', 'restart', 'prometheus-postgres-exporter.service'),
    ],
  },
  input: (ctx) => {
    const b = backendAddresses(ctx)
    return b.length
      ? [`ip saddr { ${b.join(', ')} } tcp dport ${DB.port} accept comment "PostgreSQL: from the backends only"`]
      : []
  },
}

/** pg_hba.conf: the backends alone, over TLS with their certificates and the password (golden file in test/unit/rendered.ts). */
export function pgHbaConf(ctx: Context): string {
  return renderFile('db/pg_hba.conf', {
    host: ctx.self.name,
    database: DB.name,
    user: DB.user,
    tls: ctx.plan.telemetry.cloudTls,
    backends: backendAddresses(ctx),
  })
}
