// The tunnel heals by itself: after strongSwan restarts on either gateway it is back
// within seconds with no manual step, and rekeying under continuous traffic loses
// nothing (and runs a fresh curve25519 exchange: PFS).
import t from 'tap'
import { listSas, sleep, waitForSettledTunnel, waitForTunnel } from '../lib/ipsec.js'
import { openLab, waitFor } from '../lib/lab.js'
import { expectAlert } from '../lib/monitor.js'
import {
  acknowledgedAfter,
  assertExactlyOnce,
  clientStatus,
  dbNow,
  assertOldServerAnswers,
  markStream,
  longestStall,
} from '../lib/telemetry.js'
import { providerOps } from '../../scripts/lib/providers.js'
import { giveUpSeconds, IKE_TIMERS } from '../../provision/roles/gateway.js'

const lab = await openLab(t)
if (lab) {
  const [tunnel] = lab.plan.vpn!.tunnels
  const [client] = lab.byRole('iot-client')
  // The proxy service's address (a pair's virtual one): where devices' traffic goes.
  const proxyAddr = lab.plan.services.proxy!.address
  /** A bounded ping stream from the device to the proxy: count, interval; returns loss. */
  // -w: ping waits for every reply until the deadline, not only two RTTs after the last
  // packet (under QEMU's emulation a reply can come late; late is not lost). Which
  // sequence numbers never got a reply is returned, to tell a rekey's gap from the end.
  // The flow is warmed first, with the stream's own ICMP identifier (-e): the first
  // packets of a new flow that reach a gateway in one batch (an emulated VM that stalled
  // a moment hands them over together) each get a conntrack entry of their own before the
  // first is confirmed; Linux 6.1 (the VM gateways') resolves that clash for UDP but not
  // for ICMP, and drops all but the first (counted as insert_failed). Measured on VM
  // gateways, the site's VM paused 0.3 s at a stream's start: alternating, a new flow lost
  // packets in 5 of 11 runs (4, 1, 6, 1, 4), each loss matched by as many insert_failed;
  // a warmed flow lost none in 11. CI lost icmp_seq 2 (and 2, 3) so, before any rekey was asked.
  const warmFlow = async () => {
    const id = 1 + Math.floor(Math.random() * 65534)
    await lab.sh(client.name, `ping -n -c 2 -i 0.2 -W 2 -e ${id} ${proxyAddr}`)
    return id
  }
  const stream = async (
    count: number,
    interval: number,
    { deadlineS = Math.ceil(count * interval) + 20, id }: { deadlineS?: number; id?: number } = {},
  ) => {
    id ??= await warmFlow()
    // The start on the client's clock (a container's: this machine's, as Date.now()), so
    // a lost packet's send time can be set beside what else happened, even when the
    // command itself started late (SSH under load).
    const out = (
      await lab.sh(
        client.name,
        `date +%s.%N; exec ping -n -c ${count} -i ${interval} -w ${deadlineS} -e ${id} ${proxyAddr}`,
      )
    ).stdout
    const startedAt = Number(out.split('\n')[0]) * 1000
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out)
    const replied = new Set([...out.matchAll(/icmp_seq=(\d+)/g)].map((x) => Number(x[1])))
    // With -w, ping sends past `count` while replies are late and stops at `count`
    // replies: so judge the first `count` sequence numbers, not transmitted against received.
    const missing = Array.from({ length: count }, (_, i) => i + 1).filter((q) => !replied.has(q))
    return { sent: count, transmitted: Number(m?.[1] ?? 0), received: count - missing.length, missing, startedAt }
  }

  t.before(async () => {
    await waitForTunnel(lab, tunnel)
  })

  for (const [role, gw] of [
    ['hub', tunnel.hub],
    ['site', tunnel.site],
  ] as const) {
    t.test(
      `after strongSwan restarts on the ${role} (${gw}), the tunnel and traffic come back by themselves`,
      async (t) => {
        const old = (await listSas(lab, tunnel.site, tunnel.name))[0].fields['initiator-spi']
        await lab.sh(gw, 'systemctl restart strongswan.service')
        // How fast is the benchmark's and docs/measurements.md's to say; the bound here
        // only means "it never came back by itself" (60 s: several keeper rounds and IKE retransmissions).
        const seconds = await waitForTunnel(lab, tunnel, 60_000)
        t.pass(`the tunnel is back by itself, ${seconds.toFixed(1)} s after the restart of ${gw} returned`)
        t.not((await listSas(lab, tunnel.site, tunnel.name))[0].fields['initiator-spi'], old, 'as a new IKE SA')
        const r = await stream(5, 0.2)
        t.equal(r.received, r.sent, 'traffic flows through it again')
      },
    )
  }

  // The alert reads the hub's SAs from swanctl whatever the data path: selected with lxc
  // gateways (npm test), left out with VM gateways (npm run test:vm).
  lab.test(
    t,
    "the site's strongSwan stopped: the monitor's tunnel alert fires, and resolves once it is back",
    { monitor: true, gateways: 'lxc' },
    async (t) => {
      t.teardown(() => lab.sh(tunnel.site, 'systemctl start strongswan.service'))
      await lab.sh(tunnel.site, 'systemctl stop strongswan.service') // charon says DELETE on its way out
      await expectAlert(t, lab, 'LabTunnelDown', { side: tunnel.hub, conn: tunnel.name }, 'firing')
      const r = await stream(3, 0.2, { deadlineS: 3 })
      t.equal(r.received, 0, 'meanwhile nothing crosses: the alert is true')
      await lab.sh(tunnel.site, 'systemctl start strongswan.service')
      const seconds = await waitForTunnel(lab, tunnel, 60_000)
      t.pass(`tunnel back ${seconds.toFixed(1)} s after strongSwan started on ${tunnel.site}`)
      await expectAlert(t, lab, 'LabTunnelDown', { side: tunnel.hub, conn: tunnel.name }, 'resolved')
    },
  )

  // A crash is not a restart: the hub's charon dies without a DELETE and comes back
  // (systemd) knowing no SA, and ignores what the site sends on the old ones. Left to the
  // site, only its DPD and its retransmissions giving up (lab-timers.conf) end the old IKE
  // SA (171 s with strongSwan's defaults, 7.3 to 10.4 s with the lab's); the hub's charon
  // therefore initiates every site's tunnel as it starts (lab-hub-takeover), and the site
  // replaces its dead SA. With kernel ESP (VMs) the kernel keeps the old SAs and the
  // stream flows on: the disagreement would show at the next rekey, so the scenario
  // forces one.
  t.test(`the hub's charon crashes under the stream: readings are stored again, each once`, async (t) => {
    // The stream flows before the crash (an earlier scenario's outage may still be
    // draining: the client's backoff can hold its next try a few seconds after a path returns).
    await acknowledgedAfter(lab, 'before the crash', (await clientStatus(lab)).sent, 60_000)
    const mark = await markStream(lab)
    const since = await dbNow(lab)
    const { sent } = await clientStatus(lab)
    const old = (await listSas(lab, tunnel.site, tunnel.name))[0].fields['initiator-spi']
    // The member whose charon crashes is chosen now: in a hub pair the addresses may move
    // to the other member while this one's charon is down (its health check fails).
    const crashed = lab.plan.vrrp.some((g) => g.name === tunnel.hub)
      ? (await lab.activeMember(tunnel.hub)).name
      : tunnel.hub
    const pid = (await lab.sh(crashed, 'systemctl show -p MainPID --value strongswan.service')).stdout.trim()
    t.teardown(() => lab.sh(crashed, 'systemctl start strongswan.service'))
    const t0 = Date.now()
    t.equal((await lab.sh(crashed, `kill -KILL ${pid}`)).code, 0, `charon (pid ${pid}) killed on ${crashed}`)
    const ownKernel = providerOps(lab.providerOf(crashed)!).ownKernel
    if (ownKernel) {
      // The kernel still holds the SAs: force the rekey that finds the hub knows nothing.
      await waitFor(
        'systemd to restart charon',
        async () =>
          (await lab.sh(crashed, 'systemctl show -p MainPID --value strongswan.service')).stdout.trim() !== pid &&
          (await lab.sh(crashed, 'swanctl --stats >/dev/null')).code === 0,
        30_000,
      )
      await lab.sh(tunnel.site, `swanctl --rekey --child ${tunnel.name}`)
    }
    // 60 s: a generous bound meaning "it never recovered by itself"; the stall is measured.
    const ike = await waitFor(
      'a new IKE SA between the site and the hub (its restarted charon, or the other member of a pair)',
      async () => {
        const sa = (await listSas(lab, tunnel.site, tunnel.name))[0]
        return sa && sa.fields['initiator-spi'] !== old && sa.children.some((c) => c.state === 'INSTALLED') && sa
      },
      60_000,
    )
    t.pass(`a new IKE SA ${((Date.now() - t0) / 1000).toFixed(1)} s after the crash (${ike.fields.state})`)
    await acknowledgedAfter(lab, 'after the crash', sent + 10, 60_000)
    t.pass('readings are acknowledged again')
    await assertOldServerAnswers(t, lab, ' again')
    await assertExactlyOnce(t, lab, "the hub's charon crashed", mark)
    const gap = await longestStall(lab, since, Object.keys(mark.devices))
    t.comment(
      `longest stall in storage: ${gap} s (the restarted hub initiates; the site's DPD alone would take ${(IKE_TIMERS.dpdS + giveUpSeconds()).toFixed(1)} s${ownKernel ? '; kernel ESP, rekey forced' : ''})`,
    )
  })

  t.test('rekeying the child SA under continuous traffic loses nothing, with a fresh DH exchange', async (t) => {
    // The crash before this one leaves SAs to be replaced and deleted (with kernel ESP
    // the old IKE SA's end comes seconds later): judge every packet only from a settled
    // tunnel, as a user's rekey would find it.
    const unsettled = await waitForSettledTunnel(lab, tunnel)
    if (unsettled) t.comment(`waited for the tunnel to settle; it was: ${unsettled}`)
    const before = (await listSas(lab, tunnel.site, tunnel.name))[0].children[0].fields
    // The kernel's drop counters, to say where a lost packet went (VM gateways): XFRM's,
    // and conntrack's insert_failed (a new flow's clash, above), summed over the CPUs. On
    // the site and on every hub (both members of a pair: a reply routed to the one
    // without the SA would be dropped there).
    const hubs = lab.plan.vrrp.find((g) => g.name === tunnel.hub)?.members.map((m) => m.host) ?? [tunnel.hub]
    const dropCounters = async () =>
      Object.fromEntries(
        await Promise.all(
          [tunnel.site, ...hubs].map(async (gw) => {
            const out = (
              await lab.sh(
                gw,
                'cat /proc/net/xfrm_stat 2>/dev/null; echo ==conntrack==; cat /proc/net/stat/nf_conntrack 2>/dev/null',
              )
            ).stdout
            const [xfrm, ct = ''] = out.split('==conntrack==\n')
            const counts: Record<string, number> = Object.fromEntries(
              xfrm
                .split('\n')
                .map((l) => l.trim().split(/\s+/))
                .filter((x) => x.length === 2 && x[1] !== '0')
                .map(([k, v]) => [k, Number(v)]),
            )
            const [head, ...cpus] = ct.trim().split('\n')
            const col = head?.trim().split(/\s+/).indexOf('insert_failed') ?? -1
            const insertFailed = col < 0 ? 0 : cpus.reduce((n, l) => n + parseInt(l.trim().split(/\s+/)[col], 16), 0)
            if (insertFailed) counts['conntrack insert_failed'] = insertFailed
            return [gw, counts] as const
          }),
        ),
      )
    const dropsBefore = await dropCounters()
    const since = Math.floor(Date.now() / 1000) - 1
    // Warmed here, so that the rekeys below are asked 1.5 and 3 s into the stream itself.
    const id = await warmFlow()
    const traffic = stream(300, 0.02, { id }) // 6 s of pings, 50 per second
    // Each rekey's span (asked, answered) on this machine's clock, set beside the ping's
    // own start once it is known.
    const rekey = async (who: string, gw: string) => {
      const asked = Date.now()
      const r = await lab.sh(gw, `swanctl --rekey --child ${tunnel.name}`)
      return { who, asked, done: Date.now(), code: r.code }
    }
    await sleep(1500)
    const r1 = await rekey("the site's", tunnel.site)
    await sleep(1500)
    const r2 = await rekey("the hub's", tunnel.hub)
    const { sent, transmitted, received, missing, startedAt } = await traffic
    t.equal(r1.code, 0, 'the site rekeyed')
    t.equal(r2.code, 0, 'then the hub rekeyed')
    t.equal(sent, 300)
    t.ok(transmitted >= 300, `ping sent every one (${transmitted} in all: past 300 while replies were late)`)
    const dropsAfter = await dropCounters()
    const grew = Object.entries(dropsAfter).flatMap(([gw, c]) =>
      Object.entries(c)
        .filter(([k, v]) => v > (dropsBefore[gw]?.[k] ?? 0))
        .map(([k, v]) => `${gw} ${k} +${v - (dropsBefore[gw]?.[k] ?? 0)}`),
    )
    const s = (ms: number) => ((ms - startedAt) / 1000).toFixed(2)
    const when = [r1, r2].map((r) => `${r.who} asked at ${s(r.asked)} s, answered at ${s(r.done)} s`).join('; ')
    t.equal(
      received,
      sent,
      `no packet lost (${received}/${sent})${missing.length ? `; no reply to icmp_seq ${missing.join(', ')} (sent ${missing.map((q) => ((q - 1) * 0.02).toFixed(2)).join(', ')} s after ping started; rekeys: ${when})` : ''}${grew.length ? `; drop counters that grew: ${grew.join(', ')}` : ''}`,
    )
    if (missing.length) {
      // What each gateway's charon did meanwhile, to tell a rekey's gap from anything else.
      for (const gw of [tunnel.site, ...hubs])
        t.comment(
          `${gw}'s charon:\n${(await lab.sh(gw, `journalctl -u strongswan --since @${since} -o short-precise --no-pager | tail -n 60`)).stdout}`,
        )
    }
    // The old child SAs are deleted a moment after each rekey: wait until one is left.
    const after = await waitFor(
      'one installed child SA after the rekeys',
      async () => {
        const c =
          (await listSas(lab, tunnel.site, tunnel.name))[0]?.children.filter((x) => x.state === 'INSTALLED') ?? []
        return c.length === 1 ? c : undefined
      },
      30_000,
    ).catch(
      async () =>
        (await listSas(lab, tunnel.site, tunnel.name))[0]?.children.filter((x) => x.state === 'INSTALLED') ?? [],
    )
    t.equal(after.length, 1, 'one installed child SA afterwards')
    t.not(after[0].fields['spi-in'], before['spi-in'], 'with new SPIs (new keys)')
    t.match(
      after[0].fields,
      { 'encr-alg': 'CHACHA20_POLY1305', 'dh-group': 'CURVE_25519' },
      'PFS: the rekey ran curve25519',
    )
  })
}
