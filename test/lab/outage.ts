// A site offline for a day loses nothing. The internet is cut at the site's gateway
// while the client takes readings; a day of the topology's readings is put in its
// outbox (lab-outbox-fill: the same durable appends, a day in seconds); the client is
// restarted on that backlog, the link restored, the client SIGKILLed in the middle of
// the drain; at the end every reading it ever took is stored exactly once, and fresh
// readings arrived within seconds all along. Then the cap: a small outbox fills, new
// readings are refused (counted), none taken is lost, taking resumes by itself.
// Prints the figures: files and bytes per reading, restart time, drain rates.
import t, { type Test } from 'tap'
import { bundle } from '../../services/build.js'
import { waitForTunnel, sleep } from '../lib/ipsec.js'
import { cutInternet, cutTcp } from '../lib/faults.js'
import { clientOf } from '../../provision/plan.js'
import { openLab, type Lab } from '../lib/lab.js'
import { logFrom, logged } from '../lib/logs.js'
import { alertsOf } from '../lib/monitor.js'
import { CLIENT_CONTROL_PORT } from '../../provision/ports.js'
import { assertExactlyOnce, clientStatus, markStream, sql, waitStatus, type ClientStatus } from '../lib/telemetry.js'

const FILL = '/usr/local/lib/lab/lab-outbox-fill.cjs'
const CONFIG = '/etc/lab-client/config.json'
const SAVED = '/root/lab-client-config.saved-by-outage-test.json'

const opened = await openLab(t)
if (opened) {
  const lab: Lab = opened
  const [client] = lab.byRole('iot-client')
  const tunnel = lab.plan.vpn!.tunnels[0]
  const wan = lab.plan.networks.find((n) => n.kind === 'wan')!.name
  const { intervalMs, devicesPerClient } = lab.plan.telemetry
  const perDay = Math.round(86_400_000 / intervalMs) * devicesPerClient
  const out = (s: string) => t.comment(s)
  const watch = alertsOf(lab)
  const alert = (t: Test, name: string, labels: Record<string, string>, want: 'firing' | 'resolved') =>
    watch(t, name, labels, want, 120_000)

  const status = () => clientStatus(lab)
  const fill = async (args: string) => {
    const r = await lab.sh(
      client.name,
      `runuser -u lab-client -- node ${FILL} --dir /var/lib/lab-client/outbox --devices-file /etc/lab-client/devices.json --interval-ms ${intervalMs} ${args}`,
    )
    if (r.code !== 0) throw new Error(`lab-outbox-fill failed: ${r.stderr.trim()}`)
    return JSON.parse(r.stdout) as {
      readings: number
      pending: number
      files: number
      bytes: number
      seconds: number
      full: boolean
    }
  }
  /** Start the client and time it until its control port answers: the outbox recovered. */
  const timedStart = async (how: string) => {
    const t0 = Date.now()
    await lab.sh(client.name, how)
    const s = await clientStatus(lab)
    return { seconds: (Date.now() - t0) / 1000, status: s }
  }
  const setConfig = async (jq: string) => {
    await lab.sh(client.name, `test -e ${SAVED} || cp -p ${CONFIG} ${SAVED}`)
    const r = await lab.sh(
      client.name,
      `jq ${JSON.stringify(jq)} ${SAVED} > ${CONFIG}.new && cat ${CONFIG}.new > ${CONFIG} && rm ${CONFIG}.new && systemctl restart lab-client.service`,
    )
    if (r.code !== 0) throw new Error(`cannot change the client's config: ${r.stderr}`)
  }
  const putBack = async () => {
    await lab.sh(
      client.name,
      `if test -e ${SAVED}; then cat ${SAVED} > ${CONFIG} && rm ${SAVED} && systemctl restart lab-client.service; fi`,
    )
  }
  /** The age of the newest reading of a device stored: how fresh the present is while a backlog drains. */
  const freshness = async (device: string) =>
    Number(
      (
        await sql(
          lab,
          `SELECT extract(epoch FROM clock_timestamp() - max(time)) FROM readings WHERE device_id = '${device}';`,
        )
      )[0][0],
    )

  /** The client cannot reach its server (a rule in its own output chain); returns the undo. */
  const cutServer = () => {
    const u = new URL(clientOf(lab.plan, client.name)!.url)
    return cutTcp(lab, client.name, u.hostname, Number(u.port || 80), 'test: server cut')
  }

  let restore: (() => Promise<void>) | undefined
  t.before(async () => {
    await putBack() // a run that died halfway
    const r = await lab.sh(client.name, `umask 022 && cat > ${FILL}`, { stdin: await bundle('outbox-fill') })
    if (r.code !== 0) throw new Error(`cannot upload the fill tool: ${r.stderr}`)
    await waitForTunnel(lab, tunnel)
  })
  t.afterEach(async () => {
    await restore?.()
    restore = undefined
    await putBack()
    await lab.sh(client.name, 'systemctl start lab-client.service')
    await clientStatus(lab, undefined, 'POST', '/resume')
  })
  t.teardown(async () => {
    await lab.sh(client.name, `rm -f ${FILL}`)
  })

  /** Wait for the backlog to drain, sampling the client; returns the samples. */
  async function drain(t: Test, what: string, opts: { killAt?: number; fresh?: string } = {}) {
    const samples: { at: number; s: ClientStatus }[] = []
    const lags: number[] = []
    let killed: { seconds: number; recoveryMs: number; pending: number } | undefined
    const t0 = Date.now()
    for (;;) {
      const s = await status()
      samples.push({ at: Date.now(), s })
      if (s.pending <= 2 * devicesPerClient * 2) break
      if (Date.now() - t0 > 600_000)
        throw new Error(`${what}: the backlog did not drain in 10 minutes (${s.pending} pending)`)
      // From 5 s in: the first seconds after the link returns are the outage itself.
      if (opts.fresh && Date.now() - t0 > 5000 && samples.length % 2 === 0) lags.push(await freshness(opts.fresh))
      if (opts.killAt !== undefined && !killed && s.pending <= opts.killAt) {
        // A crash in the middle of the backlog: no chance to write anything; systemd restarts it.
        const k0 = Date.now()
        await lab.sh(client.name, 'systemctl kill -s KILL lab-client.service')
        await sleep(200)
        const after = await status() // waits until it answers again
        killed = { seconds: (Date.now() - k0) / 1000, recoveryMs: after.outbox.recovery_ms, pending: after.pending }
        // Readings acknowledged after the cursor's last write (about a second's worth) come
        // back and are sent again (the server answers duplicate); what was acknowledged
        // before it must not: the backlog after the crash is below the drain's start.
        const start = samples[0].s.pending
        t.ok(
          after.pending > 0 && after.pending < start,
          `${what}: after the SIGKILL the backlog is still there, and what the cursor recorded is not sent again (${after.pending} pending: ${s.pending} at the kill, ${start} when the drain began)`,
        )
        out(
          `SIGKILL in the drain: ${Math.max(0, after.pending - s.pending)} readings acknowledged after the cursor's last write come back (sent again, stored once)`,
        )
      }
      await sleep(1000)
    }
    const first = samples[0]
    const last = samples[samples.length - 1]
    const drained = first.s.pending - last.s.pending + (last.s.generated - first.s.generated)
    const seconds = (last.at - first.at) / 1000
    return { seconds, rate: drained / seconds, drained, lags, killed }
  }

  t.test(
    'a day offline, a crash in the middle of the backlog: every reading stored once, the present never waits',
    async (t) => {
      const mark = await markStream(lab)
      restore = await cutInternet(lab, tunnel.site, wan)
      const cutAt = await status()
      const during = await waitStatus(
        lab,
        'readings waiting in the outbox with the internet cut',
        (s) => s.pending >= cutAt.pending + 2 * devicesPerClient,
        60_000,
      )
      t.ok(
        during.generated > cutAt.generated && during.pending > cutAt.pending,
        `internet cut: readings are still taken and wait in the outbox (${during.pending} pending)`,
      )
      await alert(t, 'LabTargetDown', { job: 'node', host: tunnel.site }, 'firing') // the monitor loses sight of the site

      // A day of readings in the outbox (the client stopped meanwhile, as for an update).
      await lab.sh(client.name, 'systemctl stop lab-client.service')
      const filled = await fill('--hours 24')
      t.equal(
        filled.readings,
        perDay,
        `a day of ${devicesPerClient} devices every ${intervalMs} ms: ${filled.readings} readings written in ${filled.seconds.toFixed(1)} s`,
      )
      const started = await timedStart('systemctl start lab-client.service')
      const o = started.status.outbox
      out(
        `outbox with a day's backlog: ${started.status.pending} readings in ${o.files} files, ${o.bytes} bytes: ${(o.bytes / started.status.pending).toFixed(1)} bytes and ${(o.files / started.status.pending).toExponential(1)} files per reading`,
      )
      out(
        `restart with that backlog: ${started.seconds.toFixed(2)} s until the control port answered, the outbox recovered in ${o.recovery_ms} ms`,
      )
      t.ok(started.status.pending >= perDay, 'the whole backlog is recovered')
      t.ok(
        o.bytes / started.status.pending <= 100,
        `at most 100 bytes per reading on disk (${(o.bytes / started.status.pending).toFixed(1)})`,
      )
      t.ok(
        o.oldest_pending && Date.now() - Date.parse(o.oldest_pending) > 86_000_000,
        `its oldest reading is a day old (${o.oldest_pending})`,
      )

      await restore()
      restore = undefined
      await waitForTunnel(lab, tunnel, 60_000)
      const backlogAlert = alert(t, 'LabReadingsBacklog', { host: client.name }, 'firing') // the day-old reading, seen once the site is back
      const d = await drain(t, "a day's backlog", {
        killAt: Math.floor(started.status.pending / 2),
        fresh: `${client.name}-01`,
      })
      await backlogAlert
      out(
        `drain: ${d.drained} readings in ${d.seconds.toFixed(1)} s, ${Math.round(d.rate)} readings/s in batches of ${lab.plan.telemetry.batch}, with a SIGKILL in the middle; readings are taken at ${Math.round((1000 / intervalMs) * devicesPerClient)}/s`,
      )
      if (d.killed)
        out(
          `restart after the SIGKILL: ${d.killed.seconds.toFixed(2)} s until it answered (outbox recovered in ${d.killed.recoveryMs} ms, ${d.killed.pending} pending)`,
        )
      t.ok(d.killed, 'the client was killed in the middle of the backlog')
      // How fast it drains is the benchmark's to judge (npm run bench: outbox, upload); here
      // the figures are printed. What is judged is behaviour: the present goes first. Were
      // fresh readings queued behind the backlog, they would be as old as the drain is long
      // (minutes for a day's); sent first, they are seconds old. 30 s is the generous line.
      const worst = Math.max(...d.lags)
      out(
        `freshness while draining: the newest stored reading was at most ${worst.toFixed(1)} s old (${d.lags.length} samples over a ${d.seconds.toFixed(0)} s drain)`,
      )
      t.ok(
        d.lags.length > 0 && worst < 30,
        `fresh readings kept arriving during the drain, not behind the backlog (at most ${worst.toFixed(1)} s old)`,
      )
      await assertExactlyOnce(t, lab, 'a day offline, then a crash in the middle of the drain', mark)
      await alert(t, 'LabTargetDown', { job: 'node', host: tunnel.site }, 'resolved')
      await alert(t, 'LabReadingsBacklog', { host: client.name }, 'resolved')
    },
  )

  t.test('one reading per request against batches, the same backlog, the same path', async (t) => {
    const mark = await markStream(lab)
    const rates: Record<string, number> = {}
    for (const batch of [1, lab.plan.telemetry.batch]) {
      // About 5 s of draining each: enough samples (one a second) for a rate.
      const n = batch === 1 ? 6_000 : 150_000
      restore = await cutInternet(lab, tunnel.site, wan)
      await lab.sh(client.name, 'systemctl stop lab-client.service')
      await fill(`--readings ${n}`)
      await setConfig(`.batch = ${batch}`)
      await restore()
      restore = undefined
      await waitForTunnel(lab, tunnel, 60_000)
      const d = await drain(t, `batch ${batch}`)
      rates[batch] = d.rate
      out(
        `drain, ${batch === 1 ? 'one reading per request' : `batches of ${batch}`}: ${Math.round(d.rate)} readings/s (${d.drained} in ${d.seconds.toFixed(1)} s)`,
      )
      await putBack()
    }
    const [single, batched] = [rates[1], rates[lab.plan.telemetry.batch]]
    out(
      `a day's backlog (${perDay} readings) would drain in ${(perDay / single / 60).toFixed(1)} min one by one, ${(perDay / batched / 60).toFixed(1)} min in batches`,
    )
    // The ratio is a speed, the benchmark's (npm run bench, "Upload, side by side"); printed here.
    out(`batches against single readings: ${(batched / single).toFixed(1)} times the drain rate`)
    await assertExactlyOnce(t, lab, 'drained one by one and in batches', mark)
  })

  t.test('the outbox full: new readings refused and counted, none taken lost, taking resumes by itself', async (t) => {
    const capMb = 2
    const mark = await markStream(lab)
    const journal = await logFrom(lab, client.name, { unit: 'lab-client.service' })
    // The server out of the client's reach (its own firewall), the site still in the
    // monitor's: the outbox fills while the monitor watches.
    restore = await cutServer()
    await lab.sh(client.name, 'systemctl stop lab-client.service')
    await setConfig(`.outboxMaxMb = ${capMb}`)
    await lab.sh(client.name, 'systemctl stop lab-client.service')
    const filled = await fill(`--hours 24 --max-mb ${capMb}`)
    t.ok(filled.full, `filled to the cap (${filled.bytes} bytes)`)
    await lab.sh(client.name, 'systemctl start lab-client.service')
    const full = await waitStatus(lab, 'the outbox full', (s) => s.outbox.refused_full_since_start > 0, 20_000)
    // Another round of every device's readings refused, however long that takes.
    const later = await waitStatus(
      lab,
      'more readings refused while full',
      (s) => s.outbox.refused_full_since_start >= full.outbox.refused_full_since_start + devicesPerClient,
      30_000,
    )
    t.match(
      full.outbox.full,
      /the outbox is full \(\d+ of 2097152 bytes; telemetry\.outbox_max_mb\)/,
      'the status says why',
    )
    t.ok(
      later.outbox.refused_full_since_start > full.outbox.refused_full_since_start,
      `readings are refused and counted (${later.outbox.refused_full_since_start})`,
    )
    t.equal(later.generated, full.generated, 'no reading is taken while full: no sequence number is used')
    t.equal(later.pending, full.pending, 'and none already taken is dropped')
    t.ok(later.outbox.bytes <= capMb * 1024 * 1024, `the outbox stays under its cap (${later.outbox.bytes} bytes)`)
    const metrics = (await lab.sh(client.name, `curl -s http://127.0.0.1:${CLIENT_CONTROL_PORT}/metrics`)).stdout
    t.match(metrics, /^lab_client_outbox_full 1$/m, 'the metrics say it is full')
    t.match(metrics, /^lab_client_readings_not_taken_full_total [1-9]\d*$/m, 'and count the readings not taken')
    const said = (await journal()).split('\n').filter((l) => /readings not taken: the outbox is full/.test(l))
    t.equal(said.length, 1, `the journal says it once: ${said[0] ?? 'never'}`)
    await alert(t, 'LabOutboxFull', { host: client.name }, 'firing')

    await restore()
    restore = undefined
    const resumed = await waitStatus(
      lab,
      'taking readings again',
      (s) => s.outbox.full === null && s.generated > later.generated,
      60_000,
    )
    t.pass(
      `once the backlog drained, readings are taken again by themselves (${resumed.generated - later.generated} so far)`,
    )
    t.match(
      await logged(journal, /the outbox has room again/),
      /the outbox has room again: taking readings \(\d+ not taken while it was full\)/,
      'and the journal says so',
    )
    await putBack()
    await assertExactlyOnce(t, lab, 'the outbox full, then drained', mark)
    await alert(t, 'LabOutboxFull', { host: client.name }, 'resolved')
  })
}
