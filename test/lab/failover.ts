// No single point of failure in the cloud, proven under the stream: the active member of
// a pair fails as a host does (stopped hard by its provider, frozen), through the
// operator's own command (npm run lab:fault), and readings are stored again through the
// other member while it is still down, every one exactly once, and the devices' old
// server address answers as before. Each scenario prints the longest stall in storage
// (the goals are issue 19's: a proxy within 5 s; the bench measures them over rounds).
// What a scenario faulted is put back in teardown, even when a check fails; which member
// is active afterwards is VRRP's choice, not this file's (no preemption: a fail-back is
// a choice), so every scenario starts from whichever member serves.
import t, { type Test } from 'tap'
import { clearFault, makeFault, recordedFaults, stateOf, type HostFault } from '../../scripts/lib/host-faults.js'
import { openLab, waitFor } from '../lib/lab.js'
import { logFrom } from '../lib/logs.js'
import { alertsOf, promQuery } from '../lib/monitor.js'
import {
  acknowledgedAfter,
  assertExactlyOnce,
  clientStatus,
  dbNow,
  httpFrom,
  longestStall,
  markStream,
} from '../lib/telemetry.js'

const opened = await openLab(t, { requires: { pair: 'proxy' } })
if (opened) {
  const lab = opened
  const group = lab.plan.vrrp.find((g) => g.role === 'proxy')!
  const vip = group.addresses[0].address
  const [client] = lab.byRole('iot-client')
  const members = lab.byRole('proxy').filter((h) => group.members.some((m) => m.host === h.name))
  const server = lab.plan.networks.find((n) => n.oldServer)!.oldServer!
  const log = (m: string) => t.comment(m)
  const alert = alertsOf(lab)
  const watched = !!lab.plan.services.monitor
  /** Whether the monitor last scraped this member as the pair's active one. */
  const monitorSeesActive = async (h: { name: string }) =>
    (await promQuery(lab, `lab_vrrp_state{group="${group.name}",host="${h.name}",state="master"} == 1`)).length > 0
  /** Who holds the virtual address now, or undefined while none (or two) do. */
  const holder = () => lab.active('proxy').catch(() => undefined)
  const holds = async (h: { name: string }) => !!(await lab.sh(h.name, `ip -4 -o addr show to ${vip}/32`)).stdout.trim()
  /** The member's VRRP state as its keepalived last reported it (what the monitor scrapes). */
  const vrrpState = async (h: { name: string }) =>
    /state="(\w+)"\} 1/.exec(
      (await lab.sh(h.name, `cat /var/lib/prometheus/node-exporter/vrrp-${group.name}.prom`)).stdout,
    )?.[1]

  t.before(async () => {
    // A fault left by a run that died (or by a user) is this file's to mend, not to judge.
    for (const f of recordedFaults()) {
      const h = members.find((m) => m.name === f.host)
      if (h) await clearFault(lab.plan, h, log)
    }
    await waitFor(`one member of ${group.name} to hold ${vip}`, holder, 60_000)
  })

  /**
   * The active member fails (`fault`); readings are stored again through the other while
   * it is still down; the fault is undone and the member comes back as the standby.
   */
  async function activeFails(t: Test, fault: HostFault, downState: string) {
    // The stream flows before the fault (an earlier scenario's outage may still be draining).
    await acknowledgedAfter(lab, 'before the fault', (await clientStatus(lab)).sent, 60_000)
    const victim = await lab.active('proxy')
    const survivor = members.find((m) => m !== victim)!
    const mark = await markStream(lab)
    const since = await dbNow(lab)
    const { sent } = await clientStatus(lab)
    const access = await logFrom(lab, survivor.name, { file: '/var/log/nginx/access.log' })
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
    await waitFor(`${survivor.name} to hold ${vip}`, () => holds(survivor), 60_000, 200)
    t.pass(`${survivor.name} holds ${vip} ${((Date.now() - t0) / 1000).toFixed(1)} s after ${victim.name}'s ${fault}`)
    t.equal(await holder(), survivor, `and it alone: ${victim.name} does not answer for it`)
    await acknowledgedAfter(lab, `with ${victim.name} down`, sent + 10, 60_000)
    t.equal(
      (await stateOf(victim)).condition,
      downState,
      `readings are acknowledged again while ${victim.name} is still ${downState}`,
    )
    const served = (await access()).split('\n').filter((l) => l.includes('"POST /readings') && / 20[01] /.test(l))
    t.ok(served.length > 0, `${survivor.name} stored them (${served.length} requests in its access log)`)
    const health = await httpFrom(lab, client.name, `http://${server.address}:${server.ports[0]}/healthz`)
    t.equal(health.status, 200, `the old server address ${server.address} answers from the IoT LAN`)
    const gap = await longestStall(lab, since, Object.keys(mark.devices))
    await assertExactlyOnce(t, lab, `${victim.name} ${fault}`, mark)
    t.comment(`longest stall in storage: ${gap} s (${victim.name} ${fault}; goal for a proxy: at most 5 s)`)
    return { victim, survivor }
  }

  t.test(
    `the active proxy stops hard under the stream: the other serves while it is down, every reading once`,
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
      await clearFault(lab.plan, victim, log)
      await waitFor(
        `${victim.name}'s keepalived to report BACKUP`,
        async () => (await vrrpState(victim)) === 'backup',
        60_000,
      )
      // A member that preempted would take the address within one advert of being a
      // backup (its priority is the higher one here or not: the window proves the rule
      // either way); watched for VRRP's master-down interval and a margin, every 500 ms.
      const moved = await waitFor(
        `${victim.name} to take ${vip} back (it must not)`,
        async () => (await holds(victim)) || (await vrrpState(victim)) !== 'backup',
        5_000,
        500,
      ).catch(() => false)
      t.notOk(moved, `${victim.name} came back as the standby and stayed one for 5 s`)
      t.equal(await holder(), survivor, `${survivor.name} keeps ${vip}`)
      await alert(t, 'LabPairStandbyMissing', { group: group.name }, 'resolved')
    },
  )

  t.test(
    'the active proxy freezes under the stream: the other serves; thawed, one member holds the address',
    async (t) => {
      const { victim } = await activeFails(t, 'freeze', 'frozen')
      const mark = await markStream(lab)
      const since = await dbNow(lab)
      await clearFault(lab.plan, victim, log)
      // Thawed, it still believes it is the master: VRRP settles two masters by priority
      // (RFC 5798 6.4.3), so the address may move back once. One member holds it after.
      const settled = await waitFor(`one member to hold ${vip} after the thaw`, holder, 30_000, 200)
      t.pass(`after the thaw ${settled.name} holds ${vip}`)
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
