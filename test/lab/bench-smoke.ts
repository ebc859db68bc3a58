// The benchmark harness still works: a smoke run (seconds, tiny load) over the real
// lab writes a report with every section's figures and no reading lost, and leaves
// the lab as it found it (no firewall opening, no file, nginx as provisioned, the
// client streaming again). Not a performance test: no figure is judged here.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { CLIENT_CONTROL_PORT } from '../../provision/ports.js'
import type { BenchReport } from '../../scripts/bench/report.js'
import type { SitesReport } from '../../scripts/bench/sites.js'
import { runningProviders } from '../../scripts/lib/providers.js'
import { labCli, openLab } from '../lib/lab.js'
import { clientStatus, dbFiles, sql } from '../lib/telemetry.js'

const lab = await openLab(t)
if (lab) {
  const [proxy] = lab.byRole('proxy')
  const [client] = lab.byRole('iot-client')
  t.test('npm run bench -- --smoke writes a complete report and leaves the lab as it was', async (t) => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-smoke-'))
    const nginxBefore = (await lab.sh(proxy.name, 'sha256sum /etc/nginx/nginx.conf')).stdout
    const hba = async () => {
      const sums = []
      for (const db of lab.byRole('db'))
        sums.push((await lab.sh(db.name, `sha256sum ${(await dbFiles(lab, db.name)).hba}`)).stdout)
      return sums.join('')
    }
    const hbaBefore = await hba()
    const ingestBefore = await Promise.all(
      lab
        .byRole('backend')
        .map(
          async (b) =>
            (await lab.sh(b.name, 'stat -c "%a %U" /etc/lab-ingest/config.json; sha256sum /etc/lab-ingest/config.json'))
              .stdout,
        ),
    )
    const run = await labCli('scripts/bench.ts', ['--smoke', '--out', out])
    t.match(run.stdout, /Report: .*report\.md/)
    const r = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as BenchReport
    const tls = lab.plan.telemetry.cloudTls
    t.same(
      r.ingest.scenarios.map((s) => s.id),
      tls ? ['full', 'lan-direct'] : ['full', 'tunnel-direct', 'lan-direct'],
      tls
        ? "the full path and the cloud LAN (no path from the IoT LAN straight to a backend: it admits the proxy's certificate alone)"
        : 'the three paths',
    )
    for (const s of r.ingest.scenarios) {
      t.ok(
        s.readings_per_s.median > 0 && s.p99_ms.median >= s.p50_ms.median,
        `${s.id}: ${s.readings_per_s.median} readings/s, p50 ${s.p50_ms.median} ms, p99 ${s.p99_ms.median} ms`,
      )
      t.ok(
        s.runs.every((x) => x.check.stored === x.check.acked && x.check.acked > 0),
        `${s.id}: stored = acknowledged (${s.runs[0].check.stored})`,
      )
    }
    t.same(
      r.ingest.scaling.map((s) => s.backends),
      Array.from({ length: lab.byRole('backend').length }, (_, i) => i + 1),
      'the full path with 1 to all backends',
    )
    t.ok(r.ingest.scaling.every((s) => s.readings_per_s.median > 0))
    // Each point used its backends alone: on a pair, the serving proxy's nginx was the
    // one told to leave the others out (the first member's was, whoever served).
    const names = lab.byRole('backend').map((b) => b.name)
    for (const s of r.ingest.scaling) {
      const used = [...new Set(s.runs.flatMap((x) => Object.keys(x.check.by_backend)))].sort()
      t.ok(
        used.length > 0 && used.every((b) => names.slice(0, s.backends).includes(b)),
        `${s.id}: stored by ${used.join(', ')} (of the first ${s.backends})`,
      )
    }
    const tuning = r.ingest.tuning!
    t.same(
      tuning.scenarios.map((x) => x.id),
      ['lan-direct', 'full'],
      'write batching off and on, side by side',
    )
    t.ok(
      tuning.scenarios.every(
        (x) => x.off.readings_per_s.median > 0 && x.on.readings_per_s.median > 0 && x.off.lost === 0 && x.on.lost === 0,
      ),
      'both measured, none lost',
    )
    const upload = r.ingest.upload!.scenarios[0]
    t.equal(upload.id, 'full', 'one reading per request against batches, on the full path')
    t.ok(
      upload.off.readings_per_s.median > 0 &&
        upload.on.readings_per_s.median > 0 &&
        upload.off.lost === 0 &&
        upload.on.lost === 0,
      `both measured, none lost (${upload.off.readings_per_s.median} and ${upload.on.readings_per_s.median} readings/s)`,
    )
    t.ok(
      upload.on.runs.every((x) => x.batch > 1 && x.check.stored === x.check.acked),
      'the batch runs sent batches, every reading acknowledged is stored',
    )
    t.match(fs.readFileSync(path.join(out, 'report.md'), 'utf8'), /### Upload, side by side in this run: batch upload/)
    // The devices curve's smoke: two offered rates per mode, an open loop.
    t.same(
      r.devices?.modes.map((m) => [m.batch > 1, m.points.map((p) => p.offered_per_s)]),
      [
        [false, [40, 80]],
        [true, [40, 80]],
      ],
      'the devices curve: one reading per request and batches, each at 40 and 80 readings/s offered',
    )
    t.ok(
      r.devices!.modes.every((m) =>
        m.points.every((p) => p.accepted_per_s > 0 && p.lost + p.extra === 0 && p.tiers.length > 0),
      ),
      `each point accepted readings, stored each acknowledged one once, and says which tier was busiest (${r.devices!.modes.map((m) => m.points.map((p) => `${p.accepted_per_s}/s`).join(', ')).join('; ')})`,
    )
    t.ok(fs.existsSync(path.join(out, 'devices.svg')), 'and drew the curve')
    const cloudTls = r.ingest.cloudTls!.scenarios[0]
    t.equal(cloudTls.id, 'full', 'TLS inside the cloud off and on, on the full path')
    t.ok(
      cloudTls.off.readings_per_s.median > 0 &&
        cloudTls.on.readings_per_s.median > 0 &&
        cloudTls.off.lost === 0 &&
        cloudTls.on.lost === 0,
      `both measured, none lost (${cloudTls.off.readings_per_s.median} plain and ${cloudTls.on.readings_per_s.median} TLS readings/s)`,
    )
    t.match(
      fs.readFileSync(path.join(out, 'report.md'), 'utf8'),
      /### TLS inside the cloud, side by side in this run: TLS inside the cloud/,
    )
    if (lab.plan.services.db?.cluster) {
      const sync = r.ingest.syncRepl!.scenarios[0]
      t.ok(
        sync.off.readings_per_s.median > 0 && sync.on.readings_per_s.median > 0 && sync.off.lost + sync.on.lost === 0,
        `the database's replication asynchronous and synchronous, both measured, none lost (${sync.off.readings_per_s.median} and ${sync.on.readings_per_s.median} readings/s)`,
      )
      const [row] = await sql(lab, 'SHOW synchronous_standby_names;')
      t.not(row?.[0] ?? '', '', 'and put back: the primary waits for a synchronous standby again')
      // The cluster's leader and timeline, read before and after the measurements: a
      // failover under the bench's load (two busy cores) would change them.
      t.match(r.cluster?.before, /^database-\d on timeline \d+$/, `the cluster's leader before: ${r.cluster?.before}`)
      t.equal(r.cluster?.after, r.cluster?.before, 'the same after: no failover under the load')
    }
    t.equal(r.zero_loss, true, 'no reading lost or duplicated')
    t.ok(
      r.ingest.cpu.some((c) => /charon/.test(c.process)),
      'CPU use per process, charon among them',
    )
    t.ok(
      r.tunnel!.through_tunnel_mbit.median > 0 &&
        r.tunnel!.without_tunnel_mbit.median > 0 &&
        r.tunnel!.crypto_one_core_mbit.median > 0,
      'tunnel, no-tunnel and cipher figures',
    )
    t.same(
      r.outbox!.map((x) => x.batch),
      [1, 16, 256],
      'the outbox by batch size',
    )
    t.ok(
      r.outbox!.every((x) => x.readings_per_s.median > 0),
      'with durable readings per second for each',
    )
    t.not((await lab.sh(client.name, 'test -e /var/lib/lab-bench-outbox')).code, 0, 'and its files removed')
    const changes = run.stdout
      .split('\n')
      .filter((l) => /changed on /.test(l))
      .map((l) => l.trim())
    t.equal(
      r.bringup.reprovision_changed,
      0,
      `the re-provision changed nothing${changes.length ? ` (${changes.join('; ')})` : ''}`,
    )
    t.match(r.machine, { cores: os.cpus().length, hosts: lab.plan.hosts.length, ipsec_mode: /libipsec|kernel/ })
    t.match(fs.readFileSync(path.join(out, 'chart.svg'), 'utf8'), /<svg [^>]*>[\s\S]*<rect [\s\S]*<\/svg>/)
    t.match(
      fs.readFileSync(path.join(out, 'report.md'), 'utf8'),
      /## Ingest[\s\S]*!\[readings per second and latency\]\(chart\.svg\)[\s\S]*## Tunnel[\s\S]*## Bring-up/,
    )

    for (const h of lab.plan.hosts) {
      // The chain is read first (a failed nft is a failure, not "no rule"), then searched.
      const chain = await lab.sh(h.name, 'nft list chain inet lab input')
      t.equal(chain.code, 0, `${h.name}: its input chain is there to read`)
      t.ok(/\bpolicy drop\b/.test(chain.stdout), `${h.name}: the chain read is the lab's (policy drop)`)
      t.notMatch(chain.stdout, /lab-bench/, `${h.name}: no temporary firewall rule left`)
      t.not((await lab.sh(h.name, 'test -e /run/lab-bench')).code, 0, `${h.name}: no bench file left`)
    }
    t.equal(
      (await lab.sh(proxy.name, 'sha256sum /etc/nginx/nginx.conf')).stdout,
      nginxBefore,
      'nginx.conf is as provisioned',
    )
    const ingestAfter = await Promise.all(
      lab
        .byRole('backend')
        .map(
          async (b) =>
            (await lab.sh(b.name, 'stat -c "%a %U" /etc/lab-ingest/config.json; sha256sum /etc/lab-ingest/config.json'))
              .stdout,
        ),
    )
    t.same(ingestAfter, ingestBefore, "the ingest servers' config is as provisioned (content, mode, owner)")
    t.equal(await hba(), hbaBefore, 'pg_hba.conf is as provisioned (TLS as the topology says)')
    for (const b of lab.byRole('backend'))
      t.equal(
        (await lab.sh(b.name, 'systemctl is-active lab-ingest.service')).stdout.trim(),
        'active',
        `${b.name}: lab-ingest runs`,
      )
    t.equal(
      (await clientStatus(lab)).paused,
      false,
      `${client.name}'s client streams again (control port ${CLIENT_CONTROL_PORT})`,
    )
  })

  // The sites curve's smoke: a farm of three sites added as data against the real hub,
  // each with its own identity; then the lab put back (the farm gone, the hub as before).
  t.test(
    'npm run bench -- --sites-curve --smoke brings a site farm up against the hub and takes it away',
    async (t) => {
      const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-sites-'))
      const hubs = lab.plan.vpn!.tunnels[0].hubMembers
      const hubState = async () =>
        Promise.all(
          hubs.map(
            async (h) =>
              (await lab.sh(h, 'ls /etc/swanctl/conf.d; ip route show; nft list chain inet lab input | grep -c saddr'))
                .stdout,
          ),
        )
      const before = await hubState()
      const run = await labCli('scripts/bench.ts', ['--sites-curve', '--smoke', '--sites', '1,3', '--out', out])
      t.match(run.stdout, /Report: .*report\.md/)
      const r = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as { sites: SitesReport }
      t.same(
        r.sites.points.map((p) => [p.sites, p.established, p.child_sas]),
        [
          [0, 0, 0],
          [1, 1, 1],
          [3, 3, 3],
        ],
        "every site of each point up on the hub, with its child SA (its own /24 narrowed from the farm's range)",
      )
      t.ok(
        r.sites.points.every(
          (p) => p.bringup_s !== null && p.restart_s.graceful !== null && p.restart_s.crashed !== null,
        ),
        `every point came up, and back after the hub's restart and crash (${r.sites.points.map((p) => `${p.sites}: ${p.bringup_s} s, ${p.restart_s.graceful} s, ${p.restart_s.crashed} s`).join('; ')})`,
      )
      t.ok(
        r.sites.points.every(
          (p) =>
            p.hub_rss_mib > 0 &&
            p.ms_per_1000_readings &&
            p.ms_per_1000_readings.first > 0 &&
            p.bringup_cores.hub >= 0 &&
            p.bringup_cores.farm >= 0,
        ),
        "the hub's memory, its CPU per 1000 readings of the lab's own site and both charons' CPU over the bring-up measured at each point",
      )
      t.ok(
        r.sites.crypto.setups_per_core > 0,
        `the hub's crypto ceiling measured (${r.sites.crypto.setups_per_core} setups/s per core)`,
      )
      t.match(fs.readFileSync(path.join(out, 'report.md'), 'utf8'), /## Sites against the hub[\s\S]*\| 3 \| 3 \|/)
      t.ok(fs.existsSync(path.join(out, 'sites-memory.svg')), 'and drew the curves')
      // Put back: no farm host left, the hub's connection, route and firewall as before.
      t.notOk(runningProviders().has('site-farm'), "no site-farm machine left in Vagrant's state")
      t.same(await hubState(), before, "the hub's connections, lab routes and firewall openings are as they were")
      for (const tunnel of lab.plan.vpn!.tunnels)
        t.match(
          (await lab.sh('hub', `swanctl --list-sas --ike ${tunnel.name}`)).stdout,
          /ESTABLISHED/,
          `${tunnel.site}'s own tunnel is up on the hub`,
        )
    },
  )
}
