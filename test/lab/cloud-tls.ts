// Zero trust inside the cloud: nginx reaches the backends over mutual TLS, the backends
// reach PostgreSQL over TLS with their own certificates and the password, all from the
// services CA. Proven on the wire (a unique reading's value never crosses the cloud's
// inner legs in clear, while the IoT LAN carries it: the control), by each refusal with
// the log line that says why, and by a revocation and a reissue under a live stream
// with every reading stored exactly once.
import t from 'tap'
import { clientOf } from '../../provision/plan.js'
import { randomInt } from 'node:crypto'
import { DB } from '../../provision/ports.js'
import { MONITOR_PORTS } from '../../provision/ports.js'
import { tlsFiles, tlsIdentity } from '../../provision/roles/service-tls.js'
import { isRevoked, issuedCert, certInfo, pkiPaths } from '../../provision/pki.js'
import { dbPassword } from '../../provision/secrets.js'
import { stateDir } from '../../provision/paths.js'
import { captureWire } from '../lib/ipsec.js'
import { labCli, openLab, waitFor, type Lab } from '../lib/lab.js'
import { logFrom, logged } from '../lib/logs.js'
import {
  acknowledgedAfter,
  assertExactlyOnce,
  dbFiles,
  backendMetrics,
  clientStatus,
  fromProxy,
  httpFrom,
  markStream,
  sql,
  testDevice,
  toBackendTls,
  waitStatus,
} from '../lib/telemetry.js'

const opened = await openLab(t, { requires: { cloudTls: true } })
if (opened) {
  const lab: Lab = opened
  const [client] = lab.byRole('iot-client')
  const [proxy] = lab.byRole('proxy')
  // The database's primary (a cluster's member holding its address); the backends
  // connect to the service's address, the virtual one in a cluster.
  const db = await lab.active('db')
  const ups = lab.plan.services.backends
  const [b1] = ups
  const cloud = lab.plan.networks.find(
    (n) => n.kind === 'lan' && proxy.interfaces.some((i) => i.network === n.name),
  )!.name
  const iot = lab.plan.networks.find(
    (n) => n.kind === 'lan' && client.interfaces.some((i) => i.network === n.name),
  )!.name
  const addr = (h: { interfaces: { network: string; address: string }[] }) =>
    h.interfaces.find((i) => i.network === cloud)!.address
  const dbAddr = lab.plan.services.db!.address

  /** A host's journal (a unit) or a log file, from this moment on: what a refusal wrote. */
  const since = (host: string, what: { unit: string } | { file: string }) => logFrom(lab, host, what)
  const pgLog = async () => (await dbFiles(lab, db.name)).log

  /** A certificate from a CA that is not the lab's, for the identity given, made on a host in a temporary folder. */
  async function rogueCert(host: string, cn: string, san: string): Promise<{ dir: string; cert: string; key: string }> {
    const dir = (await lab.sh(host, 'mktemp -d /tmp/lab-rogue-XXXXXX')).stdout.trim()
    const r = await lab.sh(
      host,
      [
        `cd ${dir}`,
        'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj "/CN=rogue CA" -days 1',
        `openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout c.key -out c.csr -subj "/CN=${cn}" -addext "subjectAltName=DNS:${san}"`,
        'openssl x509 -req -in c.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out c.pem -days 1 -copy_extensions copy',
      ].join(' && '),
    )
    if (r.code !== 0) throw new Error(`making a rogue certificate on ${host} failed: ${r.stderr}`)
    return { dir, cert: `${dir}/c.pem`, key: `${dir}/c.key` }
  }

  t.test("no reading crosses the cloud's inner legs in clear; the IoT LAN carries it (the control)", async (t) => {
    const device = testDevice(lab, 7)
    // A value no other reading has: its digits are the marker searched for on the wire.
    const value = Number(`${randomInt(100000, 999999)}.${randomInt(100000, 999999)}`)
    const marker = String(value)
    const r = device.reading(value)
    t.ok(r.body.includes(marker), `the reading's body holds the marker ${marker}`)
    // The proxy serving now (a pair's active member) is the one that talks to the backends.
    const serving = await lab.active('proxy')
    const legs = {
      proxyToBackends: `host ${addr(serving)} and (${ups.map((b) => `host ${b.address}`).join(' or ')})`,
      backendsToDb: `host ${dbAddr} and (${ups.map((b) => `host ${b.address}`).join(' or ')})`,
    }
    let status = 0
    const iotWire = await captureWire(lab, iot, async () => {
      const cloudWire = await captureWire(
        lab,
        cloud,
        async () => {
          status = (
            await httpFrom(lab, client.name, clientOf(lab.plan, client.name)!.url, {
              method: 'POST',
              headers: r.headers,
              body: r.body,
            })
          ).status
        },
        legs,
      )
      for (const [leg, what] of [
        ['proxyToBackends', 'proxy → backends'],
        ['backendsToDb', 'backends → database'],
      ] as const) {
        const v = cloudWire.views[leg]
        t.ok(v.lines.length > 0, `${what}: the capture saw that leg's packets (${v.lines.length})`)
        t.notOk(v.ascii.includes(marker), `${what}: the marker is not on the wire in clear`)
      }
      t.ok(
        cloudWire.views.proxyToBackends.lines.some((l) => l.includes(`.${b1.port}`)),
        `proxy → backends: on the readings port (${b1.port})`,
      )
      t.ok(
        cloudWire.views.backendsToDb.lines.some((l) => l.includes(`.${DB.port}`)),
        `backends → database: on PostgreSQL's port (${DB.port})`,
      )
      t.comment(
        `the gateway → proxy hop (the devices' own HTTP, out of the tunnel) ${cloudWire.ascii.includes(marker) ? 'carries it' : 'does not carry it'}: see docs/tls.md`,
      )
    })
    t.equal(status, 201, 'the reading was stored')
    t.ok(
      iotWire.ascii.includes(marker),
      'control: the same capture method finds the marker on the IoT LAN (plain HTTP from the device)',
    )
    t.same(
      await sql(lab, `SELECT value FROM readings WHERE device_id = '${device.id}' AND seq = ${r.seq};`),
      [[marker]],
      'and it reached the database: it crossed both legs',
    )
  })

  t.test(
    "a backend admits the proxy's certificate alone: others are refused at the handshake, each with its reason logged",
    async (t) => {
      const ok = await fromProxy(lab, b1, '/healthz')
      t.match(ok, { status: 200, json: { backend: b1.name } }, `control: the proxy's certificate opens ${b1.name}`)
      const log = await since(b1.name, { unit: 'lab-ingest.service' })
      // The refusals' counter since this test began (the service counts every refusal since it started).
      const refusedNoCert = async () =>
        Number(
          /^ingest_tls_refused_total\{reason="no_certificate"\} (\d+)$/m.exec(await backendMetrics(lab, b1))?.[1] ?? 0,
        )
      const refusedBefore = await refusedNoCert()
      const noCert = await toBackendTls(lab, proxy.name, b1, '/healthz', undefined, { timeout: 5 })
      t.equal(noCert.status, 0, `no client certificate: no answer (${noCert.body})`)
      t.match(
        await logged(log, /TLS: refused .*no client certificate/),
        /refused \S+: no client certificate/,
        `${b1.name} logs why`,
      )

      const rogue = await rogueCert(proxy.name, `${proxy.name}.${lab.plan.name}`, `${proxy.name}.${lab.plan.name}`)
      t.teardown(() => lab.sh(proxy.name, `rm -rf ${rogue.dir}`))
      const other = await toBackendTls(lab, proxy.name, b1, '/healthz', rogue, { timeout: 5 })
      t.equal(other.status, 0, `another CA's certificate, though it names the proxy: no answer (${other.body})`)
      t.match(
        await logged(log, /TLS: refused .*not from the services CA/),
        /not from the services CA \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/,
        `${b1.name} logs why`,
      )

      const plain = await httpFrom(lab, proxy.name, `http://${b1.address}:${b1.port}/healthz`, { timeout: 5 })
      t.not(plain.status, 200, `plain HTTP to the readings port: refused (${plain.status || plain.body})`)
      t.match(
        await logged(log, /TLS: handshake with .* failed/),
        /http request/,
        `${b1.name} logs a plain HTTP request`,
      )

      t.ok(
        (await refusedNoCert()) >= refusedBefore + 1,
        `the refusal is counted by reason for the monitor (no_certificate ${refusedBefore} → ${await refusedNoCert()})`,
      )
    },
  )

  t.test('nginx keeps its TLS connections to the backends: few handshakes for many readings', async (t) => {
    const count = async (b: { name: string; address: string }) => {
      const m = await backendMetrics(lab, b)
      const n = (re: RegExp) => Number(re.exec(m)?.[1] ?? NaN)
      return {
        handshakes:
          n(/^ingest_tls_handshakes_total\{resumed="false"\} (\d+)$/m) +
          n(/^ingest_tls_handshakes_total\{resumed="true"\} (\d+)$/m),
        requests: n(/^ingest_request_duration_seconds_count (\d+)$/m),
      }
    }
    const before = await Promise.all(ups.map(count))
    const delta = async () => {
      const after = await Promise.all(ups.map(count))
      return {
        handshakes: after.reduce((n, x, i) => n + x.handshakes - before[i].handshakes, 0),
        requests: after.reduce((n, x, i) => n + x.requests - before[i].requests, 0),
      }
    }
    // At least 20 of the client's requests since the first reading, however long they take.
    const { handshakes, requests } = await waitFor(
      '20 requests from nginx to the backends',
      async () => {
        const d = await delta()
        return d.requests >= 20 ? d : undefined
      },
      60_000,
      500,
    )
    t.ok(requests >= 20, `the client's readings kept coming (${requests} requests)`)
    t.ok(
      handshakes * 5 <= requests,
      `${handshakes} TLS handshakes for ${requests} requests: connections are kept and reused`,
    )
  })

  t.test('PostgreSQL admits TLS only, with a certificate of the services CA and the password', async (t) => {
    const file = await pgLog()
    const log = await since(db.name, { file })
    const own = tlsFiles(b1.name)
    const password = dbPassword(stateDir)
    const psql = (conn: string, pw = password) =>
      lab.sh(
        b1.name,
        `PGPASSWORD='${pw}' PGCONNECT_TIMEOUT=5 psql -X -At -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' "host=${dbAddr} port=${DB.port} dbname=${DB.name} user=${DB.user} ${conn}"`,
      )
    const full = `sslmode=verify-full sslrootcert=${own.ca} sslcrl=${own.crl}`
    const good = await psql(`${full} sslcert=${own.cert} sslkey=${own.key}`)
    t.equal(
      good.stdout.trim(),
      't',
      `control: ${b1.name}'s certificate and the password log in, over TLS (${good.stderr.trim() || 'ok'})`,
    )

    const plain = await psql('sslmode=disable')
    t.not(plain.code, 0, 'plain TCP, with the right password: refused')
    t.match(
      await logged(log, /no pg_hba.conf entry .*no encryption/),
      /no pg_hba\.conf entry for host "[\d.]+", user "ingest", database "telemetry", no encryption/,
      'PostgreSQL logs why',
    )

    const noCert = await psql(full)
    t.not(noCert.code, 0, 'TLS without a client certificate: refused')
    t.match(
      await logged(log, /requires a valid client certificate/),
      /connection requires a valid client certificate/,
      'PostgreSQL logs why',
    )

    const rogue = await rogueCert(b1.name, DB.user, `${b1.name}.${lab.plan.name}`)
    t.teardown(() => lab.sh(b1.name, `rm -rf ${rogue.dir}`))
    const other = await psql(`${full} sslcert=${rogue.cert} sslkey=${rogue.key}`)
    t.not(other.code, 0, "another CA's certificate, with the right CN and password: refused")
    // PostgreSQL 15 says no more than this (16 adds the depth and OpenSSL's reason).
    t.match(
      await logged(log, /could not accept SSL connection/),
      /could not accept SSL connection: certificate verify failed/,
      'PostgreSQL logs why',
    )

    const wrongPw = await psql(`${full} sslcert=${own.cert} sslkey=${own.key}`, 'not-the-password')
    t.not(wrongPw.code, 0, 'the right certificate with a wrong password: refused (both are needed)')
    t.match(
      await logged(log, /password authentication failed/),
      /password authentication failed for user "ingest"/,
      'PostgreSQL logs why',
    )

    const sessions = await sql(
      lab,
      `SELECT s.ssl, s.version, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = '${DB.user}' AND a.application_name = 'lab-ingest';`,
    )
    const backendDns = ups.map((b) => `/O=${lab.plan.name}/OU=${tlsIdentity(lab.plan, b.name)}/CN=${DB.user}`)
    t.ok(
      sessions.length > 0 &&
        sessions.every(([ssl, version, dn]) => ssl === 't' && version === 'TLSv1.3' && backendDns.includes(dn)),
      `every backend session is TLS 1.3 with a backend's certificate (${[...new Set(sessions.map((s) => s[2]))].join(', ')})`,
    )
  })

  t.test(
    'a revoked backend certificate is refused by nginx and PostgreSQL; reissued, the backend is back; exactly once throughout',
    async (t) => {
      const p = pkiPaths(stateDir, 'services')
      const reissue = () => labCli('scripts/pki.ts', ['reissue', b1.name])
      // Whatever happens below, the backend leaves with a valid certificate.
      t.teardown(async () => {
        const cert = issuedCert(p, b1.name)
        if (cert && isRevoked(p, (await certInfo(p, cert)).serial)) await reissue()
      })
      // The check at the end covers every reading the client ever took (seq 1 to last):
      // before, during and after.
      // The member serving now (a pair's active one, whichever the lab's history left
      // holding the address) is the one whose nginx talks to the backends and logs it.
      const serving = await lab.active('proxy')
      const nginxLog = await since(serving.name, { file: '/var/log/nginx/error.log' })
      const pg = await since(db.name, { file: await pgLog() })
      const mark = await markStream(lab)
      const before = await clientStatus(lab)
      const pid = async () => (await lab.sh(b1.name, 'systemctl show -P MainPID lab-ingest.service')).stdout.trim()
      const pidBefore = await pid()
      const { serial } = await certInfo(p, issuedCert(p, b1.name)!)
      const t0 = Date.now()
      const revoked = await labCli('scripts/pki.ts', ['revoke', b1.name])
      const t1 = Date.now()
      t.match(
        revoked.stdout,
        new RegExp(`Revoked ${b1.name}'s service certificate \\(serial ${serial}\\)`),
        `npm run pki -- revoke ${b1.name}`,
      )

      t.match(
        await logged(nginxLog, /certificate revoked/, 20_000),
        new RegExp(`certificate revoked.*upstream: "https://${b1.address.replace(/\./g, '\\.')}:${b1.port}`),
        `nginx refuses ${b1.name}: certificate revoked`,
      )
      t.comment(
        `revoke: ${((t1 - t0) / 1000).toFixed(1)} s for the command (CRL to the proxy, ${ups.length} backends and the database, reloads); nginx refused ${b1.name} ${((Date.now() - t1) / 1000).toFixed(1)} s after it (at most)`,
      )
      // A new connection from the revoked backend to the database (its health check makes one).
      const ingestLog = await since(b1.name, { unit: 'lab-ingest.service' })
      const health = await httpFrom(lab, b1.name, `http://${b1.address}:${MONITOR_PORTS.ingest}/healthz`)
      t.equal(health.status, 503, `${b1.name} can no longer reach its database (${String(health.json?.status)})`)
      t.match(
        await logged(pg, /could not accept SSL connection/),
        /certificate verify failed/,
        'PostgreSQL refuses it at the handshake',
      )
      t.match(
        await logged(ingestLog, /database is unreachable/),
        /certificate revoked/,
        `${b1.name} logs the database's answer: certificate revoked`,
      )
      t.same(
        await sql(
          lab,
          `SELECT count(*) FROM pg_stat_ssl WHERE client_serial = ${BigInt(`0x${serial.replace(/:/g, '')}`)};`,
        ),
        [['0']],
        'no session runs on the revoked certificate',
      )
      const during = await waitStatus(
        lab,
        'readings acknowledged with a backend revoked',
        (s) => s.sent >= before.sent + 2 * Object.keys(s.devices).length,
        60_000,
      )
      t.ok(
        during.sent > before.sent,
        `readings are still acknowledged (${during.sent - before.sent}): ${ups
          .slice(1)
          .map((b) => b.name)
          .join(', ')} took them`,
      )

      const t2 = Date.now()
      const re = await reissue()
      const t3 = Date.now()
      t.match(re.stdout, new RegExp(`Issued ${b1.name} a new certificate`), `npm run pki -- reissue ${b1.name}`)
      t.notOk(isRevoked(p, (await certInfo(p, issuedCert(p, b1.name)!)).serial), 'the new certificate is not revoked')
      // From a cursor taken after the reissue: lines written before it are not its work.
      const access = await since(serving.name, { file: '/var/log/nginx/access.log' })
      const back = await logged(
        access,
        new RegExp(
          `upstream=(?:[\\d.:]+, )*${b1.address.replace(/\./g, '\\.')}:${b1.port} upstream_status=(?:\\d+, )*20[01]`,
        ),
        30_000,
      )
      t.ok(back, `nginx sends readings to ${b1.name} again, answered: ${back}`)
      t.comment(
        `reissue: ${((t3 - t2) / 1000).toFixed(1)} s for the command (a key made on ${b1.name}, a certificate, a provision of it); nginx used it again ${((Date.now() - t3) / 1000).toFixed(1)} s after (at most)`,
      )
      t.match(
        await httpFrom(lab, b1.name, `http://${b1.address}:${MONITOR_PORTS.ingest}/healthz`),
        { status: 200 },
        `${b1.name} reaches its database again, with its new certificate`,
      )
      t.equal(await pid(), pidBefore, `${b1.name}'s service was reloaded, not restarted (same process)`)
      await assertExactlyOnce(t, lab, 'a backend revoked, then reissued', mark)
    },
  )

  t.test(
    "reissuing the proxy's and the database's certificates reloads them under the stream: same processes, nothing lost",
    async (t) => {
      const p = pkiPaths(stateDir, 'services')
      const mark = await markStream(lab)
      const mainPid = async (host: string, unit: string) =>
        (await lab.sh(host, `systemctl show -P MainPID ${unit}`)).stdout.trim()
      const pg = async () => (await lab.sh(db.name, `head -1 ${(await dbFiles(lab, db.name)).pid}`)).stdout.trim()
      for (const [host, pid] of [
        [proxy.name, () => mainPid(proxy.name, 'nginx.service')],
        [db.name, pg],
      ] as const) {
        const before = { serial: (await certInfo(p, issuedCert(p, host)!)).serial, pid: await pid() }
        const r = await labCli('scripts/pki.ts', ['reissue', host])
        t.match(r.stdout, new RegExp(`Issued ${host} a new certificate`), `npm run pki -- reissue ${host}`)
        const serial = (await certInfo(p, issuedCert(p, host)!)).serial
        t.not(serial, before.serial, `${host}: a new certificate (${before.serial} → ${serial})`)
        t.equal(
          (await lab.sh(host, `openssl x509 -in ${tlsFiles(host).cert} -noout -serial`)).stdout
            .trim()
            .split('=')[1]
            .toLowerCase()
            .replace(/^0+/, ''),
          serial.replace(/:/g, '').replace(/^0+/, ''),
          `${host} has it`,
        )
        t.equal(await pid(), before.pid, `${host}: reloaded, not restarted (same main process)`)
        const sent = (await clientStatus(lab)).sent
        await acknowledgedAfter(lab, `${host}'s reissue`, sent)
        t.pass(`${host}: readings keep flowing after the reload`)
      }
      const sessions = await sql(
        lab,
        `SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = '${DB.user}' AND s.ssl;`,
      )
      t.ok(Number(sessions[0][0]) > 0, 'the backends are connected to the database over TLS')
      await assertExactlyOnce(t, lab, "the proxy's and the database's certificates reissued", mark)
    },
  )
}
