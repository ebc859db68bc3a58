// keepalived's state changes reach the notify script one at a time, in keepalived's
// order: the FIFO's reader (vrrp-notify-fifo) rendered as a member gets it, its notify
// script stood in for by one that records when each change began and ended and takes
// long over the first. keepalived's own `notify` ran a script per change side by side,
// so the first change, ending last, was what the monitor kept (seen: FAULT then BACKUP).
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { topologyFile } from '../../provision/paths.js'
import { loadPlan } from '../../provision/plan.js'
import { keepalivedConf, vrrpNotify, vrrpNotifyReader, vrrpTmpfiles } from '../../provision/roles/vrrp.js'
import { TEXTFILE_DIR } from '../../provision/roles/monitoring.js'
import { proxy } from '../../provision/roles/proxy.js'
import type { Context } from '../../provision/runner.js'
import { waitFor } from '../../provision/lib/wait.js'
import { endGroupAndRemove } from '../lib/group.js'

const plan = loadPlan(topologyFile)
const self = plan.hosts.find((h) => h.name === 'proxy-1')!
const ctx = {
  plan,
  self,
  facts: { virtualization: 'lxc', interfaceOf: Object.fromEntries(self.interfaces.map((i) => [i.network, i.network])) },
} as unknown as Context

t.test('keepalived hands its state changes to one reader through a FIFO, not a script per change', async (t) => {
  const conf = keepalivedConf(ctx, proxy.health!(ctx))
  t.match(conf, /^\s+vrrp_notify_fifo \/run\/keepalived-lab-notify\.fifo$/m)
  t.match(conf, /^\s+vrrp_notify_fifo_script "\/usr\/local\/lib\/lab\/vrrp-notify-fifo"$/m)
  t.notMatch(conf, /^\s+notify /m, 'no notify script per instance')
  t.match(vrrpNotifyReader(ctx), /\/usr\/local\/lib\/lab\/vrrp-notify "\$type" "\$name" "\$state" "\$priority"/)
})

t.test('two changes a moment apart are handled in order, the second after the first ends', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrrpn-'))
  const fifo = path.join(dir, 'notify.fifo')
  const log = path.join(dir, 'log')
  const notify = path.join(dir, 'notify')
  // The first change takes 0.6 s, the second none: run side by side, the first ends last.
  fs.writeFileSync(
    notify,
    `#!/bin/sh\necho "begin $2 $3" >> ${log}\n[ "$3" = FAULT ] && sleep 0.6\necho "end $2 $3" >> ${log}\necho "$3" > ${dir}/state\n`,
    { mode: 0o755 },
  )
  const reader = path.join(dir, 'reader')
  fs.writeFileSync(reader, vrrpNotifyReader(ctx).replaceAll('/usr/local/lib/lab/vrrp-notify', notify), { mode: 0o755 })
  t.equal(spawnSync('mkfifo', [fifo]).status, 0)
  // Its own process group: a notify it started dies with it, not while dir is removed.
  const child = spawn(reader, [fifo], { stdio: 'ignore', detached: true })
  t.teardown(() => endGroupAndRemove(child, dir))
  // keepalived's writer: its lines, and a line of another kind the reader passes over.
  fs.writeFileSync(fifo, 'INSTANCE "proxy" FAULT 110\nGROUP "g" BACKUP 0\nINSTANCE "proxy" BACKUP 110\n')
  await waitFor(
    'both changes handled',
    async () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '').split('\n').length > 4,
    5000,
    50,
  )
  t.same(fs.readFileSync(log, 'utf8').trim().split('\n'), [
    'begin proxy FAULT',
    'end proxy FAULT',
    'begin proxy BACKUP',
    'end proxy BACKUP',
  ])
  t.equal(fs.readFileSync(path.join(dir, 'state'), 'utf8').trim(), 'BACKUP', 'the last change is the one kept')
  // keepalived restarted: the FIFO closed, then written again: the reader reads on.
  fs.writeFileSync(fifo, 'INSTANCE "proxy" MASTER 110\n')
  await waitFor(
    'the change after a reopen handled',
    async () => fs.readFileSync(path.join(dir, 'state'), 'utf8').trim() === 'MASTER',
    5000,
    50,
  )
  t.pass('a change written after the FIFO was closed and opened again')
})

t.test('an event that is no state (MASTER_RX_LOWER_PRI) leaves the state the monitor reads as it was', async (t) => {
  // keepalived sends it to a master that hears a lower priority's advert: on the lab, a
  // thawed proxy-1 that took its address back. Written as a state, the file held no 1
  // and the monitor saw the pair with no active member (LabPairNoActive firing).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrrps-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'vrrp-notify')
  fs.writeFileSync(script, vrrpNotify(ctx, proxy.health!(ctx)).replaceAll(TEXTFILE_DIR, dir), { mode: 0o755 })
  const prom = path.join(dir, 'vrrp-proxy.prom')
  const states = () =>
    Object.fromEntries(
      [...fs.readFileSync(prom, 'utf8').matchAll(/^lab_vrrp_state\{group="proxy",state="(\w+)"\} (\d)$/gm)].map((m) => [
        m[1],
        Number(m[2]),
      ]),
    )
  const notify = (state: string) => spawnSync(script, ['INSTANCE', 'proxy', state, '150'], { encoding: 'utf8' })
  t.equal(notify('MASTER').status, 0)
  t.same(states(), { master: 1, backup: 0, fault: 0, stop: 0 }, 'MASTER: the file says master')
  const r = notify('MASTER_RX_LOWER_PRI')
  t.equal(r.status, 0, `it ends well (${r.stderr.trim()})`)
  t.same(states(), { master: 1, backup: 0, fault: 0, stop: 0 }, 'after MASTER_RX_LOWER_PRI: still master')
  t.equal(fs.statSync(prom).mode & 0o777, 0o644, 'node exporter can read it')
  t.equal(notify('BACKUP').status, 0)
  t.same(states(), { master: 0, backup: 1, fault: 0, stop: 0 }, 'a real change after it is written')
  t.same(
    fs.readdirSync(dir).filter((f) => f !== 'vrrp-notify' && f !== 'vrrp-proxy.prom'),
    [],
    'no temporary file left behind',
  )
})

t.test("at boot the state keepalived's notify wrote is removed, and nothing else the monitor reads", async (t) => {
  // A member stopped hard while active came back saying master until keepalived's first
  // change, while the other member held the address (LabPairSplit, a VM hub, 7 Dec 2026).
  // systemd-tmpfiles as the boot runs it (systemd-tmpfiles-setup: --boot --remove),
  // under a root of its own.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vrrpb-'))
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  const dir = path.join(root, TEXTFILE_DIR)
  fs.mkdirSync(dir, { recursive: true })
  const script = path.join(root, 'vrrp-notify')
  fs.writeFileSync(script, vrrpNotify(ctx, proxy.health!(ctx)).replaceAll(TEXTFILE_DIR, dir), { mode: 0o755 })
  t.equal(spawnSync(script, ['INSTANCE', 'proxy', 'MASTER', '150']).status, 0)
  const other = path.join(dir, 'ipsec.prom')
  fs.writeFileSync(other, 'lab_other 1\n')
  const conf = path.join(root, 'lab-vrrp.conf')
  fs.writeFileSync(conf, vrrpTmpfiles(ctx))
  t.ok(fs.existsSync(path.join(dir, 'vrrp-proxy.prom')), 'before the boot: the state the notify wrote')
  const r = spawnSync('systemd-tmpfiles', ['--boot', '--remove', `--root=${root}`, conf], { encoding: 'utf8' })
  t.equal(r.status, 0, `systemd-tmpfiles takes the rule (${r.stderr.trim()})`)
  t.notOk(fs.existsSync(path.join(dir, 'vrrp-proxy.prom')), 'after it: gone, so the member reports no state')
  t.ok(fs.existsSync(other), "another collector's file is left alone")
})
