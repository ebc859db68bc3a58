// No single point of failure in the cloud, proven under the stream: the active member of
// a pair (the hub pair, the proxy pair) fails as a host does (stopped hard by its
// provider, frozen), through the operator's own command (npm run lab:fault), and readings
// are stored again through the other member while it is still down, every one exactly
// once, and the devices' old server address answers as before. Each scenario prints the
// longest stall in storage (the goals are issue 19's: a hub within 10 s, a proxy within
// 5 s; the bench measures them over rounds).
// What a scenario faulted is put back in teardown, even when a check fails; which member
// is active afterwards is VRRP's choice, not this file's (no preemption: a fail-back is
// a choice), so every scenario starts from whichever member serves.
import { holdsAddress } from '../../scripts/lib/vrrp-holders.js'
import { vrrpStateFile } from '../../provision/roles/vrrp.js'
import t, { type Test } from 'tap'
import { clearFault, makeFault, recordedFaults, stateOf, type HostFault } from '../../scripts/lib/host-faults.js'
import { labCli, openLab, waitFor } from '../lib/lab.js'
import { hostRevoked, pkiPaths } from '../../provision/pki.js'
import { stateDir } from '../../provision/paths.js'
import type { Host, VrrpGroup } from '../../provision/plan.js'
import { logFrom } from '../lib/logs.js'
import { alertsOf, promQuery } from '../lib/monitor.js'
import {
  acknowledgedAfter,
  assertExactlyOnce,
  clientStatus,
  dbNow,
  assertOldServerAnswers,
  longestStall,
  markStream,
} from '../lib/telemetry.js'

const opened = await openLab(t)
if (opened) {
  const lab = opened
  const server = lab.plan.networks.find((n) => n.oldServer)?.oldServer
  const log = (m: string) => t.comment(m)
  const alert = alertsOf(lab)
  const watched = !!lab.plan.services.monitor
  /** What a pair's tier needs checked beyond the stream: who really carried the readings. */
  const goals: Record<string, { seconds: number; carried: (t: Test, survivor: Host) => Promise<void> }> = {
    gateway: {
      seconds: 10,
      // Each site's tunnel now ends on the survivor, under the hub's identity and address.
      carried: async (t, survivor) => {
        for (const tunnel of lab.plan.vpn?.tunnels ?? []) {
          const sas = (await lab.sh(survivor.name, `swanctl --list-sas --ike ${tunnel.name}`)).stdout
          t.match(
            sas,
            new RegExp(
              `ESTABLISHED[\\s\\S]*local\\s+'${tunnel.hub}\\.[^']*' @ ${tunnel.hubAddress.replace(/\./g, '\\.')}`,
            ),
            `${survivor.name} holds ${tunnel.site}'s IKE SA as ${tunnel.hub} on ${tunnel.hubAddress}`,
          )
        }
      },
    },
    proxy: {
      seconds: 5,
      carried: async (t, survivor) => {
        const served = (await survivorAccess.get(survivor.name)!()).split('\n')
        const posts = served.filter((l) => l.includes('"POST /readings') && / 20[01] /.test(l))
        t.ok(posts.length > 0, `${survivor.name} stored them (${posts.length} requests in its access log)`)
      },
    },
  }
  /** A pair member's VRRP state as its keepalived last reported it (what the monitor scrapes). */
  const vrrpStateOf = async (group: string, host: string) =>
    /state="(\w+)"\} 1/.exec((await lab.sh(host, `cat ${vrrpStateFile(group)}`)).stdout)?.[1]

  /** The proxy's access log from the scenario's start on (its own reading, not the lab's history). */
  const survivorAccess = new Map<string, () => Promise<string>>()

  t.before(async () => {
    // A fault left by a run that died (or by a user) is this file's to mend, not to judge.
    for (const f of recordedFaults()) {
      const h = lab.plan.hosts.find((m) => m.name === f.host)
      if (h) await clearFault(lab.plan, h, log)
    }
    for (const group of lab.plan.vrrp)
      await waitFor(`one member of ${group.name} to hold ${group.addresses[0].address}`, () => holder(group), 60_000)
    // And every pair whole, as its members report it and the monitor sees it: a lab just
    // provisioned, or a member an earlier run faulted and this hook mended, may still be
    // coming back as the standby (CI, 7 Dec 2026: a VM hub just provisioned was still in
    // FAULT, and the first scenario's "before" found LabPairStandbyMissing firing). The
    // scenarios judge the change they make, from a pair with its standby. (A database
    // group's replicas are in FAULT by design.)
    for (const group of lab.plan.vrrp.filter((g) => g.role !== 'db')) {
      const states = () =>
        Promise.all(
          group.members.map(
            async (m) =>
              `${m.host} ${(await vrrpStateOf(group.name, m.host).catch(() => undefined)) ?? 'not reporting'}`,
          ),
        )
      await waitFor(
        `one member of ${group.name} to report master and the others backup`,
        async () => {
          const now = await states()
          return now.filter((s) => s.endsWith(' master')).length === 1 && now.every((s) => / (master|backup)$/.test(s))
        },
        120_000,
        1000,
      ).catch(async (e: Error) => {
        throw new Error(`${e.message}; they report: ${(await states()).join(', ')}`)
      })
    }
    if (watched)
      await waitFor(
        'the monitor to see every pair with its standby (LabPairStandbyMissing neither pending nor firing)',
        async () => (await promQuery(lab, 'ALERTS{alertname="LabPairStandbyMissing"}')).length === 0,
        60_000,
        1000,
      )
  })

  /** Who holds the group's virtual address now, or undefined while none (or two) do. */
  const holder = (group: VrrpGroup) => lab.activeMember(group.name).catch(() => undefined)

  // LAB_PAIRS=hub: only the named groups' scenarios; the others are left out with that
  // reason (to run one pair's, on VM gateways say).
  const chosen = process.env.LAB_PAIRS?.split(',').filter(Boolean)
  for (const role of ['gateway', 'proxy'] as const) {
    const group = lab.plan.vrrp.find((g) => g.role === role)
    const what = role === 'gateway' ? 'hub' : 'proxy'
    const needs = { pair: role }
    if (!group) {
      lab.test(t, `the active ${what} fails under the stream`, needs, async () => {})
      continue
    }
    if (chosen && !chosen.includes(group.name)) {
      t.comment(`left out: the ${group.name} pair's scenarios (LAB_PAIRS=${process.env.LAB_PAIRS})`)
      continue
    }
    const members = group.members.map((m) => lab.plan.hosts.find((h) => h.name === m.host)!)
    const vips = group.addresses.map((a) => a.address)
    const holds = (h: Host) => holdsAddress((n, c) => lab.sh(n, c), h.name, vips[0])
    /** Whether the monitor last scraped this member as the pair's active one. */
    const monitorSeesActive = async (h: Host) =>
      (await promQuery(lab, `lab_vrrp_state{group="${group.name}",host="${h.name}",state="master"} == 1`)).length > 0
    const vrrpState = (h: Host) => vrrpStateOf(group.name, h.name)

    /**
     * A member back as the standby stays one. One that preempted would take the address
     * within one advert of being a backup (its priority is the higher one here or not: the
     * window proves the rule either way); watched for VRRP's master-down interval and a
     * margin, every 500 ms.
     */
    const staysStandby = async (t: Test, victim: Host) => {
      const moved = await waitFor(
        `${victim.name} to take ${vips[0]} back (it must not)`,
        async () => (await holds(victim)) || (await vrrpState(victim)) !== 'backup',
        5_000,
        500,
      ).catch(() => false)
      t.notOk(moved, `${victim.name} came back as the standby and stayed one for 5 s`)
    }

    /**
     * The active member fails (`fault`); readings are stored again through the other while
     * it is still down; the fault is undone by the caller (or teardown).
     */
    const activeFails = async (t: Test, fault: HostFault, downState: string) => {
      // The stream flows before the fault (an earlier scenario's outage may still be draining).
      await acknowledgedAfter(lab, 'before the fault', (await clientStatus(lab)).sent, 60_000)
      const victim = await lab.activeMember(group.name)
      const survivor = members.find((m) => m !== victim)!
      const mark = await markStream(lab)
      const since = await dbNow(lab)
      const { sent } = await clientStatus(lab)
      if (role === 'proxy')
        survivorAccess.set(survivor.name, await logFrom(lab, survivor.name, { file: '/var/log/nginx/access.log' }))
      // The monitor's view before: this scenario judges only the change it makes.
      if (watched) {
        t.notOk(await monitorSeesActive(survivor), `before: the monitor sees ${survivor.name} as the standby`)
        t.same(
          await promQuery(lab, `ALERTS{alertname="LabPairStandbyMissing",group="${group.name}",alertstate="firing"}`),
          [],
          'before: the pair has its standby (LabPairStandbyMissing is not firing)',
        )
      }
      t.teardown(() => clearFault(lab.plan, victim, log))
      const t0 = Date.now()
      await makeFault(lab.plan, victim, fault, log)
      // 60 s: a generous bound meaning "it never took over"; the stall is measured. Asked
      // of the survivor alone while it happens (the victim does not answer), then of both.
      await waitFor(`${survivor.name} to hold ${vips[0]}`, () => holds(survivor), 60_000, 200)
      t.pass(
        `${survivor.name} holds ${vips[0]} ${((Date.now() - t0) / 1000).toFixed(1)} s after ${victim.name}'s ${fault}`,
      )
      // Not asked whether the victim still holds it: stopped or frozen, it answers nothing
      // (holdsAddress gives it up after its bound, 15 s on an emulated VM, and counts it
      // as not holding), so the check could not fail and cost 15 s a scenario. Whether
      // it takes the address once back is asked below (staysStandby, the monitor).
      for (const vip of vips.slice(1))
        t.ok(await holdsAddress((n, c) => lab.sh(n, c), survivor.name, vip), `${vip} moved with it (one sync group)`)
      await acknowledgedAfter(lab, `with ${victim.name} down`, sent + 10, 60_000)
      t.equal(
        (await stateOf(victim)).condition,
        downState,
        `readings are acknowledged again while ${victim.name} is still ${downState}`,
      )
      await goals[role].carried(t, survivor)
      if (server) await assertOldServerAnswers(t, lab, '')
      const gap = await longestStall(lab, since, Object.keys(mark.devices))
      await assertExactlyOnce(t, lab, `${victim.name} ${fault}`, mark)
      t.comment(
        `longest stall in storage: ${gap} s (${victim.name} ${fault}; goal for a ${what}: at most ${goals[role].seconds} s)`,
      )
      return { victim, survivor }
    }

    lab.test(
      t,
      `the active ${what} stops hard under the stream: the other serves while it is down, every reading once`,
      needs,
      async (t) => {
        const { victim, survivor } = await activeFails(t, 'stop', 'stopped')
        // The monitor sees the new active member, and a pair left without a standby while the
        // victim is down. (LabPairFailover is promtool's to prove: its 5-minute window would
        // still hold an earlier scenario's failover here.)
        if (watched) {
          await waitFor(`the monitor to see ${survivor.name} active`, () => monitorSeesActive(survivor), 60_000, 1000)
          t.pass(`the monitor sees ${survivor.name} as the active member`)
        }
        await alert(t, 'LabPairStandbyMissing', { group: group.name }, 'firing')
        t.equal((await stateOf(victim)).condition, 'stopped', `(${victim.name} still stopped)`)
        // Back: it starts as a backup and does not take the address back (nopreempt).
        const restarted = Date.now()
        await clearFault(lab.plan, victim, log)
        await waitFor(
          `${victim.name}'s keepalived to report BACKUP`,
          async () => (await vrrpState(victim)) === 'backup',
          60_000,
        )
        await staysStandby(t, victim)
        t.equal(await holder(group), survivor, `${survivor.name} keeps ${vips[0]}`)
        await alert(t, 'LabPairStandbyMissing', { group: group.name }, 'resolved')
        // Nor did it say it was active: the state from before its stop is not reported
        // after the boot (it was, on a VM hub: the pair had two active members to the
        // monitor until keepalived's first change, and LabPairSplit fired).
        if (watched) {
          const window = Math.ceil((Date.now() - restarted) / 1000)
          const seen = await promQuery(
            lab,
            `max_over_time(lab_vrrp_state{group="${group.name}",host="${victim.name}",state="master"}[${window}s:1s])`,
          )
          t.same(
            seen.map((s) => s.value[1]),
            ['0'],
            `since its restart the monitor never saw ${victim.name} as active (the last ${window} s, every second)`,
          )
        }
      },
    )

    if (role === 'gateway' && lab.plan.vpn?.auth === 'pubkey')
      lab.test(
        t,
        "the active hub's certificate revoked under the stream: the other member serves, each reading once",
        // The takeover on kernel ESP is the stop's and the freeze's to prove on VMs.
        { ...needs, sameOnVms: true },
        async (t) => {
          await acknowledgedAfter(lab, 'before the revocation', (await clientStatus(lab)).sent, 60_000)
          const victim = await lab.activeMember(group.name)
          const survivor = members.find((m) => m !== victim)!
          const stillRevoked = () => hostRevoked(pkiPaths(stateDir, 'ike'), victim.name)
          // Judged by the CA's own records, not by how far this test got.
          t.teardown(async () => {
            if (await stillRevoked()) await labCli('scripts/pki.ts', ['reissue', victim.name])
          })
          const mark = await markStream(lab)
          const since = await dbNow(lab)
          const { sent } = await clientStatus(lab)
          const r = await labCli('scripts/pki.ts', ['revoke', victim.name])
          t.match(r.stdout, new RegExp(`Revoked ${victim.name}'s IKE certificate`))
          // The revoked member's health check (its certificate under the CRL) fails: it
          // gives the hub's addresses up, and the other member takes the sites over.
          await waitFor(`${survivor.name} to hold ${vips[0]}`, () => holds(survivor), 60_000, 200)
          t.equal(await holder(group), survivor, `${survivor.name} alone holds ${vips[0]}`)
          await waitFor(
            `${victim.name}'s keepalived to report FAULT`,
            async () => (await vrrpState(victim)) === 'fault',
            30_000,
          )
          t.pass(`${victim.name} is in FAULT while its certificate is revoked`)
          await acknowledgedAfter(lab, `with ${victim.name} revoked`, sent + 10, 60_000)
          await goals.gateway.carried(t, survivor)
          t.same(
            (await lab.sh(victim.name, 'swanctl --list-sas --noblock 2>/dev/null | grep -c ESTABLISHED')).stdout.trim(),
            '0',
            `${victim.name} holds no SA on its revoked certificate`,
          )
          const gap = await longestStall(lab, since, Object.keys(mark.devices))
          await assertExactlyOnce(t, lab, `${victim.name} revoked`, mark)
          t.comment(`longest stall in storage: ${gap} s (${victim.name}'s certificate revoked)`)
          // Reissued: the member comes back as the standby, and the survivor keeps serving.
          await labCli('scripts/pki.ts', ['reissue', victim.name])
          t.notOk(await stillRevoked(), `${victim.name} has a certificate off the CRL again`)
          await waitFor(
            `${victim.name}'s keepalived to report BACKUP`,
            async () => (await vrrpState(victim)) === 'backup',
            60_000,
          )
          await staysStandby(t, victim)
          t.equal(await holder(group), survivor, `${survivor.name} keeps ${vips[0]} (no preemption)`)
        },
      )

    lab.test(
      t,
      `the active ${what} freezes under the stream: the other serves; thawed, one member holds the address`,
      needs,
      async (t) => {
        const { victim } = await activeFails(t, 'freeze', 'frozen')
        const mark = await markStream(lab)
        const since = await dbNow(lab)
        await clearFault(lab.plan, victim, log)
        // Thawed, it still believes it is the master: VRRP settles two masters by priority
        // (RFC 5798 6.4.3), so the address may move back once. One member holds it after.
        const settled = await waitFor(`one member to hold ${vips[0]} after the thaw`, () => holder(group), 30_000, 200)
        t.pass(`after the thaw ${settled.name} holds ${vips[0]}`)
        // Each member reports the state it is in, and the monitor sees the holder as the
        // active one: keepalived's MASTER_RX_LOWER_PRI, sent to the master that hears the
        // other's advert, once left the holder reporting no state at all (LabPairNoActive).
        const other = members.find((m) => m.name !== settled.name)!
        const reported = async () =>
          `${settled.name} ${await vrrpState(settled)}, ${other.name} ${await vrrpState(other)}`
        const agreed = `${settled.name} master, ${other.name} backup`
        await waitFor(`the members to report ${agreed}`, async () => (await reported()) === agreed, 30_000, 500).catch(
          () => undefined,
        )
        t.equal(await reported(), agreed, 'after the thaw each member reports its state')
        if (watched) {
          await waitFor(`the monitor to see ${settled.name} active`, () => monitorSeesActive(settled), 60_000, 1000)
          t.pass(`the monitor sees ${settled.name} as the active member`)
        }
        // Its clock kept this machine's time, as a host that only hung would have: a clock
        // left behind by the pause makes every CRL issued since "not yet valid" to it.
        const before = Date.now() / 1000
        const theirs = Number((await lab.sh(victim.name, 'date +%s.%N')).stdout.trim())
        const after = Date.now() / 1000
        t.ok(
          theirs >= before - 2 && theirs <= after + 2,
          `thawed, ${victim.name}'s clock is this machine's (${(theirs - (before + after) / 2).toFixed(1)} s off)`,
        )
        const { sent } = await clientStatus(lab)
        await acknowledgedAfter(lab, 'after the thaw', sent + 10, 60_000)
        const gap = await longestStall(lab, since, Object.keys(mark.devices))
        await assertExactlyOnce(t, lab, `${victim.name} thawed`, mark)
        t.comment(
          `longest stall in storage after the thaw: ${gap} s (${settled === victim ? 'the address moved back' : 'it stayed'})`,
        )
      },
    )
  }
}
