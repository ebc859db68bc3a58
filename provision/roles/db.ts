// Role db: PostgreSQL, listening on the cloud LAN only, admitting the backends alone
// (pg_hba and nftables) over TLS, each with its own certificate from the services CA and
// the password, with the readings table and the ingest role created by the
// provisioner. The role's password is generated here and checked against the
// server's SCRAM verifier, so a second provision neither changes nor reveals it.
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto'
import { converge } from '../modules/command.js'
import { onlyIf } from '../modules/only-if.js'
import { waitFor } from '../lib/wait.js'
import { file } from '../modules/file.js'
import { commandHandler, service, unitHandler } from '../modules/service.js'
import { dbPassword, dbReplicationPassword, dbSuperuserPassword, patroniRestPassword } from '../secrets.js'
import type { Context, Step } from '../runner.js'
import { renderFile, templateText } from '../template.js'
import type { RoleModule } from './types.js'
import { DB, MONITOR_PORTS } from '../ports.js'
import { serviceTlsSteps, tlsFiles } from './service-tls.js'
import { pkiPaths, revocations } from '../pki.js'
import { type PatroniState, startingReplica, startMarkersSince, stuckOnForkedTimeline } from './db-stuck-standby.js'
import { shellQuote } from '../shell-quote.js'

/** The newest PostgreSQL installed, e.g. 15 (Debian's layout: /usr/lib/postgresql/15). */
async function pgVersion(ctx: Context): Promise<string> {
  const r = await ctx.host.exec('ls /usr/lib/postgresql | sort -V | tail -1', { check: false })
  const v = r.stdout.trim()
  if (!v)
    throw new Error(
      `${ctx.self.name} has no PostgreSQL under /usr/lib/postgresql: is the postgresql package installed?`,
    )
  return v
}

/** The single host's cluster config folder, e.g. /etc/postgresql/15/main (Debian's own cluster). */
async function clusterDir(ctx: Context): Promise<string> {
  return `/etc/postgresql/${await pgVersion(ctx)}/main`
}

/** Is this host a member of a database cluster (Patroni), rather than the one database host? */
export const inCluster = (ctx: Context) => !!ctx.plan.services.db?.cluster
const single = (ctx: Context) => !inCluster(ctx)
const cluster = (ctx: Context) => {
  const c = ctx.plan.services.db?.cluster
  if (!c) throw new Error(`${ctx.self.name}: the plan has no database cluster`)
  return c
}

/**
 * Where a database host keeps what the tests and a person read, single or cluster
 * alike: the data folder (postmaster.pid), the server's log, its pid file; and
 * pg_hba.conf (the single host's in Debian's cluster folder, a member's where Patroni
 * is told to read it).
 */
export const dbPaths = (version: string, clustered: boolean) => ({
  data: `/var/lib/postgresql/${version}/main`,
  log: `/var/log/postgresql/postgresql-${version}-main.log`,
  pid: `/var/run/postgresql/${version}-main.pid`,
  hba: clustered ? '/etc/lab-db/pg_hba.conf' : `/etc/postgresql/${version}/main/pg_hba.conf`,
})
const pathsOf = async (ctx: Context) => dbPaths(await pgVersion(ctx), inCluster(ctx))

/** The database service in the plan: the backends' addresses, and this member's own. */
const backendAddresses = (ctx: Context) => ctx.plan.services.db?.clients ?? []
const listenAddress = (ctx: Context) => {
  const me = ctx.plan.services.db?.members.find((m) => m.host === ctx.self.name)
  if (!me) throw new Error(`${ctx.self.name} has role db but no LAN address to serve the backends on`)
  return me.address
}
/** The host's TLS files as template values (tls_cert, tls_key, tls_ca, tls_crl). */
const tlsVars = (host: string) => Object.fromEntries(Object.entries(tlsFiles(host)).map(([k, v]) => [`tls_${k}`, v]))
const otherMembers = (ctx: Context) =>
  inCluster(ctx) ? (ctx.plan.services.db?.members ?? []).filter((m) => m.host !== ctx.self.name) : []

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

/** A command for the running server only: one that is not running has no sessions, and reads its files when it starts. */
const ifRunning = (command: string) => `if pg_isready -q; then ${command}; fi`

/**
 * The server re-reads its files (a new CRL, certificate or pg_hba.conf), whichever way
 * it is run; a server that is not running reads them when it starts.
 */
const reloadConf = ifRunning(psql('postgres', 'SELECT pg_reload_conf()'))

/**
 * The shell command that makes a revocation bite: the CRL reloaded first, then the
 * sessions opened with a revoked certificate ended (the backend reconnects, and is
 * refused). The provision's step and `npm run pki -- revoke` both run it, on a single
 * database host or on every member of a cluster (pg_reload_conf: Debian's unit and
 * Patroni run the server alike here).
 */
export const endRevokedSessions = (serials: string[]) =>
  `${reloadConf} >/dev/null && sleep 1 && ${psql('postgres', `SELECT pg_terminate_backend(pid) FROM (${revokedSessions(serials)}) s`)} >/dev/null && sleep 0.5`

const revokedSerials = (ctx: Context) => revocations(pkiPaths(ctx.stateDir, 'services')).map((r) => r.serial)

/**
 * curl's config for a PATCH of Patroni's settings (its REST API, behind the generated
 * password), read from stdin: neither the password nor the body is on a command line.
 */
export const patroniPatch = (stateDir: string, body: Record<string, unknown>) =>
  [
    `user = "patroni:${patroniRestPassword(stateDir)}"`,
    `data = "${JSON.stringify(body).replace(/"/g, '\\"')}"`,
    'header = "Content-Type: application/json"',
    'request = "PATCH"',
  ].join('\n')
/** This member's Patroni REST API. */
const restUrl = (ctx: Context) => `http://${listenAddress(ctx)}:${cluster(ctx).patroniPort}`

/** Patroni's own view of this member (GET /patroni on its REST API), or undefined while it does not answer. */
async function patroniState(ctx: Context): Promise<PatroniState | undefined> {
  const r = await ctx.host.exec(`curl -fsS --max-time 2 ${restUrl(ctx)}/patroni`, { check: false })
  if (r.code !== 0) return undefined
  try {
    return JSON.parse(r.stdout) as PatroniState
  } catch {
    return undefined
  }
}
/**
 * Restarts Patroni when this member is a standby stuck as Patroni 3.0.2 leaves it
 * (PostgreSQL refusing the leader's timeline forked before its recovery point), saying
 * so in the host's journal with PostgreSQL's own line. True when it restarted.
 */
async function restartIfStuck(ctx: Context, s: PatroniState | undefined): Promise<boolean> {
  // Its log is read only in the state a stuck member is in (this runs every poll).
  if (!startingReplica(s)) return false
  const { log } = await pathsOf(ctx)
  const markers = await ctx.host.exec(startMarkersSince(log), { check: false })
  const why = stuckOnForkedTimeline(s, markers.stdout)
  if (!why) return false
  await ctx.host.exec(
    `logger -t lab-provision ${shellQuote(`restarting Patroni: a standby it would leave starting forever (Patroni 3.0.2, patroni#3650): ${why}`)} && systemctl restart patroni.service`,
  )
  return true
}

const isLeader = async (ctx: Context) => {
  if (single(ctx)) return true
  const s = await patroniState(ctx)
  return s?.role === 'master' || s?.role === 'primary'
}

/**
 * What must hold for PostgreSQL's own objects (the schema, the roles): the primary
 * makes them; a replica cannot write, and gets them by streaming, so on a replica this
 * waits until they have arrived (the leader's run makes them) and reports ok.
 */
function onPrimary(
  name: string,
  check: (ctx: Context) => Promise<boolean>,
  fix: (ctx: Context) => Promise<void>,
): Step {
  const step = converge(name, check, fix)
  return {
    name,
    async run(ctx) {
      if (await isLeader(ctx)) return step.run(ctx)
      if (ctx.dryRun) return false
      await waitFor(`${name} (made on the primary, streamed to ${ctx.self.name})`, () => check(ctx), 180_000, 1000)
      return false
    },
  }
}

/** The cluster's timings (seconds), patroni.yml explains them. */
export const PATRONI_TIMES = { ttl: 12, loopWait: 2, retryTimeout: 5 }

/** What the running cluster must hold in etcd (bootstrap.dcs makes it so at its start). */
export const dcsSettings = () => ({
  ttl: PATRONI_TIMES.ttl,
  loop_wait: PATRONI_TIMES.loopWait,
  retry_timeout: PATRONI_TIMES.retryTimeout,
  synchronous_mode: true,
  synchronous_mode_strict: true,
  synchronous_node_count: 1,
  // WAL every member keeps for a former primary's rewind (patroni.yml says why). Patroni
  // takes this one from etcd alone: a member's own file cannot set it.
  postgresql: { parameters: { wal_keep_size: '1GB' } },
})

/** Does `have` hold every value of `want`, objects compared key by key (PATCH /config merges them so)? */
function holds(have: unknown, want: unknown): boolean {
  if (want && typeof want === 'object')
    return Object.entries(want).every(([k, v]) =>
      holds(have && typeof have === 'object' ? (have as Record<string, unknown>)[k] : undefined, v),
    )
  return have === want
}

/**
 * The body of PATCH /config that makes the cluster's settings in etcd the provisioned
 * ones, or undefined when they are. A cluster left in maintenance mode (`pause`: Patroni
 * fails nothing over; a benchmark pauses it while it sets the cluster aside) is resumed
 * too: the topology asks for a cluster that fails over.
 */
export function dcsPatch(have: Record<string, unknown>): Record<string, unknown> | undefined {
  const drifted = !holds(have, dcsSettings()) || have.pause === true
  return drifted ? dcsBody() : undefined
}

/** What the provisioner sends when the settings drifted: its own, and out of maintenance mode. */
const dcsBody = () => ({ ...dcsSettings(), pause: null })

export function patroniYml(ctx: Context, version: string): string {
  const c = cluster(ctx)
  const dcs = dcsSettings()
  const p = dbPaths(version, true)
  return renderFile('db/patroni.yml', {
    host: ctx.self.name,
    scope: c.scope,
    address: listenAddress(ctx),
    service_address: ctx.plan.services.db!.address,
    port: DB.port,
    patroni_port: c.patroniPort,
    etcd_port: c.etcdClientPort,
    members: ctx.plan.services.db!.members,
    ttl: dcs.ttl,
    loop_wait: dcs.loop_wait,
    retry_timeout: dcs.retry_timeout,
    wal_sender_timeout: dcs.ttl - dcs.loop_wait,
    data_dir: p.data,
    bin_dir: `/usr/lib/postgresql/${version}/bin`,
    hba_file: p.hba,
    pid_file: p.pid,
    log_file: p.log.split('/').pop()!,
    rest_password: patroniRestPassword(ctx.stateDir),
    superuser_password: dbSuperuserPassword(ctx.stateDir),
    replication_password: dbReplicationPassword(ctx.stateDir),
    ...tlsVars(ctx.self.name),
  })
}

export function etcdDefaults(ctx: Context): string {
  const c = cluster(ctx)
  const members = ctx.plan.services.db!.members
  return renderFile('db/etcd.default', {
    host: ctx.self.name,
    scope: c.scope,
    address: listenAddress(ctx),
    client_port: c.etcdClientPort,
    peer_port: c.etcdPeerPort,
    initial_cluster: members.map((m) => `${m.host}=http://${m.address}:${c.etcdPeerPort}`).join(','),
  })
}

/** The steps that run PostgreSQL: Debian's own cluster on a single host. */
const singleSteps: Step[] = (
  [
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
            ...tlsVars(ctx.self.name),
          }),
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
  ] satisfies Step[]
).map((step) => onlyIf(single, step))

/**
 * The steps that make this host a cluster member: Debian's own cluster gone (Patroni
 * makes its own: initdb on the first leader, a base backup from it on the others),
 * etcd, then Patroni, then the member running as the leader or a streaming replica.
 */
const clusterSteps: Step[] = (
  [
    converge(
      "Ensure Debian's own PostgreSQL cluster is gone (Patroni runs this member's)",
      async (ctx) => (await ctx.host.exec(`test -e ${await clusterDir(ctx)}`, { check: false })).code !== 0,
      async (ctx) => {
        await ctx.host.exec(`pg_dropcluster --stop ${await pgVersion(ctx)} main`)
      },
    ),
    service('postgresql.service', { enabled: false, active: false }),
    file(
      "Ensure this member's etcd settings (the database cluster's three members)",
      { path: '/etc/default/etcd', content: etcdDefaults },
      ['restart etcd'],
    ),
    // The three members start theirs in the same run: etcd reports ready once a majority is up.
    service('etcd.service', { enabled: true, active: true }),
    file(
      "Ensure Patroni's settings for this member (0600: the cluster's passwords)",
      {
        path: '/etc/patroni/config.yml',
        mode: '0600',
        owner: 'postgres',
        content: async (ctx) => patroniYml(ctx, await pgVersion(ctx)),
        // YAML that parses. (patroni --validate-config cannot check a live member: it
        // calls the REST API's port, which the running Patroni holds, "in use".)
        validate: `python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' {}`,
      },
      ['reload patroni'],
    ),
    service('patroni.service', { enabled: true, active: true }),
    {
      name: 'Ensure this member runs in the cluster (the leader, or a replica streaming from it)',
      async run(ctx) {
        if (ctx.dryRun) return false
        // A standby Patroni 3.0.2 would leave starting forever gets Patroni restarted,
        // once (db-stuck-standby.ts says why): then this step changed something.
        let restarted = false
        try {
          await waitFor(
            `Patroni on ${ctx.self.name} to report PostgreSQL running (a first base backup takes a while)`,
            async () => {
              const s = await patroniState(ctx)
              if (s?.state === 'running') return true
              if (!restarted) restarted = await restartIfStuck(ctx, s)
              // Thrown, so that a timeout says what Patroni said last.
              throw new Error(
                s ? `Patroni says state ${s.state}, role ${s.role}` : "Patroni's REST API does not answer",
              )
            },
            240_000,
            1000,
          )
        } catch (e) {
          // Why it is not running is in Patroni's log (a failed start, a rewind, a base backup): its last lines go with the error.
          const log = await ctx.host.exec('journalctl -u patroni -n 12 --no-pager -o cat', { check: false })
          throw new Error(`${(e as Error).message}; Patroni's last lines:\n${log.stdout}`)
        }
        return restarted
      },
    },
    // bootstrap.dcs in patroni.yml applies when the cluster is made; a running cluster's
    // settings live in etcd and change through the REST API (PATCH /config).
    converge(
      "Ensure the cluster's replication mode and timings, failing over (Patroni's settings in etcd, not paused)",
      async (ctx) => {
        const r = await ctx.host.exec(`curl -fsS --max-time 5 ${restUrl(ctx)}/config`, { check: false })
        if (r.code !== 0) return false
        return !dcsPatch(JSON.parse(r.stdout) as Record<string, unknown>)
      },
      async (ctx) => {
        await ctx.host.exec(`curl -fsS --max-time 10 -K - ${restUrl(ctx)}/config >/dev/null`, {
          stdin: patroniPatch(ctx.stateDir, dcsBody()),
        })
      },
    ),
  ] satisfies Step[]
).map((step) => onlyIf(inCluster, step))

export const db: RoleModule = {
  role: {
    name: 'db',
    steps: [
      // Before the config that names these files.
      ...serviceTlsSteps('postgres', ['reload postgresql']),
      {
        name: 'Ensure pg_hba.conf admits the backends alone (and the other members), over TLS with their certificates and the password',
        notify: ['reload postgresql'],
        run: async (ctx) =>
          file('', {
            path: (await pathsOf(ctx)).hba,
            mode: '0640',
            owner: 'postgres',
            content: pgHbaConf(ctx),
          }).run(ctx),
      },
      ...singleSteps,
      ...clusterSteps,
      // A CRL stops new logins; a session that began before it would go on. The CRL is
      // loaded first (a reload), then those sessions end: the backend reconnects, and
      // is refused if its certificate is the revoked one.
      converge(
        'Ensure no session runs on a revoked certificate',
        async (ctx) => {
          const serials = revokedSerials(ctx)
          if (!serials.length) return true
          // Asked of a running server only: a dry run on a member whose PostgreSQL is down says converged, not "failed".
          return (await ctx.host.exec(ifRunning(psql('postgres', revokedSessions(serials))))).stdout.trim() === ''
        },
        async (ctx) => {
          await ctx.host.exec(endRevokedSessions(revokedSerials(ctx)))
        },
      ),
      onPrimary(
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
      onPrimary(
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
      commandHandler('reload postgresql', reloadConf),
      unitHandler('restart postgresql', 'restart', 'postgresql.service'),
      unitHandler('restart etcd', 'restart', 'etcd.service'),
      // Patroni re-reads its settings on SIGHUP and reloads PostgreSQL's with them.
      unitHandler('reload patroni', 'reload', 'patroni.service'),
      unitHandler('restart postgres exporter', 'restart', 'prometheus-postgres-exporter.service'),
    ],
  },
  // A member's service answers when Patroni says it leads: keepalived moves the
  // backends' address to the primary alone (replicas are in FAULT, by design).
  health: (ctx) => ({
    service: 'patroni',
    check: `/usr/bin/curl -fsS -o /dev/null --max-time 1 ${restUrl(ctx)}/primary`,
  }),
  input: (ctx) => {
    const b = backendAddresses(ctx)
    const others = otherMembers(ctx).map((m) => m.address)
    return [
      ...(b.length
        ? [`ip saddr { ${b.join(', ')} } tcp dport ${DB.port} accept comment "PostgreSQL: from the backends only"`]
        : []),
      ...(others.length
        ? [
            `ip saddr { ${others.join(', ')} } tcp dport { ${DB.port}, ${cluster(ctx).patroniPort}, ${cluster(ctx).etcdClientPort}, ${cluster(ctx).etcdPeerPort} } accept comment "the database cluster's members: replication, Patroni, etcd"`,
          ]
        : []),
    ]
  },
}

/** pg_hba.conf: the backends alone (and a cluster's other members), over TLS with their certificates and the password (golden file in test/unit/rendered.ts). */
export function pgHbaConf(ctx: Context): string {
  return renderFile('db/pg_hba.conf', {
    host: ctx.self.name,
    database: DB.name,
    user: DB.user,
    tls: ctx.plan.telemetry.cloudTls,
    backends: backendAddresses(ctx),
    members: otherMembers(ctx).map((m) => m.address),
  })
}
