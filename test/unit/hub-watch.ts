// The hub pair member's health watch (lab-hub-watch), run here as the member gets it
// (rendered from the default topology, its paths moved into a temporary folder, its
// commands stood in for on PATH): the verdict keepalived tracks follows charon and the
// certificate, a crash shorter than `fall` rounds is ridden through, pki --verify runs
// only when its inputs change, and a sleep while holding the hub's address runs the
// takeover. On the lab, test/lab/failover.ts proves the same end to end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { topologyFile } from '../../provision/paths.js'
import { loadPlan } from '../../provision/plan.js'
import { HUB_HEALTH_FILE, hubWatch } from '../../provision/roles/gateway.js'
import { hubWatchTimes } from '../../provision/roles/vrrp.js'
import type { Context } from '../../provision/runner.js'
import { waitFor } from '../../provision/lib/wait.js'
import { endGroupAndRemove } from '../lib/group.js'

const plan = loadPlan(topologyFile)
const member = plan.hosts.find((h) => h.name === 'gw-cloud')!
const ctx = { plan, self: member, facts: { virtualization: 'lxc', interfaceOf: {} } } as unknown as Context

t.test('the watch renders with the times of its host', async (t) => {
  t.same(hubWatchTimes(ctx), { periodS: 1, fall: 2, gapS: 4 })
  const qemu = { ...ctx, facts: { virtualization: 'qemu', interfaceOf: {} } } as unknown as Context
  t.same(hubWatchTimes(qemu), { periodS: 1, fall: 4, gapS: 10 }, 'under emulation: longer, a round can be late')
  t.match(hubWatch(qemu), /^fall=4\ngap=10$/m)
  t.match(hubWatch(ctx), `out=${HUB_HEALTH_FILE}\n`)
})

/**
 * A member in a temporary folder: the watch rendered for gw-cloud with its paths moved
 * there and rounds of `period` seconds (a gap of 2 s: the clock it reads has whole
 * seconds), pki, logger, ip and setsid stood in for (each call recorded, pki's exit code
 * read from pki.exit, ip's answer from ip.out). Removed, and the watch killed, at teardown.
 */
function labMember(t: Test, period: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubw-'))
  const bin = path.join(dir, 'bin')
  for (const d of [bin, path.join(dir, 'run'), path.join(dir, 'swanctl')]) fs.mkdirSync(d)
  const stub = (name: string, body: string) =>
    fs.writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  stub('pki', `echo "$*" >> ${dir}/pki.calls; exit $(cat ${dir}/pki.exit)`)
  stub('logger', `echo "$*" >> ${dir}/log`)
  stub('ip', `cat ${dir}/ip.out 2>/dev/null; exit 0`)
  stub('setsid', `echo "$*" >> ${dir}/setsid.calls`)
  const write = (name: string, text: string) => fs.writeFileSync(path.join(dir, name), text)
  const read = (name: string) =>
    fs.existsSync(path.join(dir, name)) ? fs.readFileSync(path.join(dir, name), 'utf8') : ''
  write('pki.exit', '0')
  for (const f of ['x509.pem', 'ca.pem', 'lab.crl']) write(`swanctl/${f}`, f)
  const script = hubWatch(ctx)
    .replaceAll('/run/', `${dir}/run/`)
    .replaceAll('/etc/swanctl/x509/gw-cloud.pem', `${dir}/swanctl/x509.pem`)
    .replaceAll('/etc/swanctl/x509ca/lab-ca.pem', `${dir}/swanctl/ca.pem`)
    .replaceAll('/etc/swanctl/x509crl/lab.crl', `${dir}/swanctl/lab.crl`)
    .replace(/^period=1$/m, `period=${period}`)
    .replace(/^gap=4$/m, 'gap=2')
  write('watch', script)
  const out = path.join(dir, 'run', path.basename(HUB_HEALTH_FILE))
  let watch: ChildProcess | undefined
  t.teardown(() => endGroupAndRemove(watch, dir))
  return {
    dir,
    script,
    write,
    read,
    verdict: () => (fs.existsSync(out) ? fs.readFileSync(out, 'utf8').trim() : ''),
    start: () =>
      (watch = spawn('bash', [path.join(dir, 'watch')], {
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
        stdio: 'ignore',
        detached: true,
      })),
  }
}

t.test('the verdict follows charon and the certificate; a sleep while holding the address takes over', async (t) => {
  // Rounds of 0.1 s, fall 2.
  const { dir, script, write, read, verdict, start } = labMember(t, '0.1')
  t.notMatch(
    script.replaceAll(`${dir}/`, ''),
    /\/run\/|\/etc\/swanctl/,
    'every path of the member is moved into the folder',
  )
  const until = (what: string, ok: () => boolean, ms = 5000) => waitFor(what, () => Promise.resolve(ok()), ms, 20)

  // charon: a live pid and its vici socket.
  const vici = net.createServer().listen(path.join(dir, 'run', 'charon.vici'))
  await new Promise((r) => vici.once('listening', r))
  const deadPid = spawnSync('true').pid
  write('run/charon.pid', `${process.pid}\n`)

  t.teardown(() => vici.close())
  const watch = start()

  await until('a healthy verdict', () => verdict() === '0')
  t.pass('charon runs and the certificate verifies: 0')
  t.equal(read('pki.calls').split('\n').filter(Boolean).length, 1, 'pki --verify ran once')
  // Time for n rounds to pass: only where the point is that nothing changes in them.
  const rounds = (n: number) => new Promise((r) => setTimeout(r, n * 100 + 50))
  await rounds(5)
  t.equal(read('pki.calls').split('\n').filter(Boolean).length, 1, 'and not again while nothing changed')

  // A crash shorter than fall rounds: ridden through.
  write('run/charon.pid', `${deadPid}\n`)
  await new Promise((r) => setTimeout(r, 60))
  write('run/charon.pid', `${process.pid}\n`)
  await rounds(4)
  t.equal(verdict(), '0', 'charon gone for less than a round: still 0')

  // charon gone for good: 1 after fall rounds, 0 again when it is back.
  write('run/charon.pid', `${deadPid}\n`)
  await until('an unhealthy verdict', () => verdict() === '1')
  await until('the journal says why', () =>
    read('log').includes('charon has not run with its vici socket for 2 rounds'),
  )
  write('run/charon.pid', `${process.pid}\n`)
  await until('healthy again', () => verdict() === '0')
  t.pass('charon back: 0')

  // The vici socket gone (charon up but not listening): not healthy either.
  vici.close()
  await until('unhealthy without the vici socket', () => verdict() === '1')
  t.pass('no vici socket: 1')
  const vici2 = net.createServer().listen(path.join(dir, 'run', 'charon.vici'))
  t.teardown(() => vici2.close())
  await until('healthy with the socket back', () => verdict() === '0')

  // A new CRL that revokes this member: pki --verify fails, 1; a good one, 0 again.
  write('pki.exit', '1')
  await new Promise((r) => setTimeout(r, 20))
  write('swanctl/lab.crl', 'revoked')
  await until('revoked: unhealthy', () => verdict() === '1')
  await until('the journal says why', () => read('log').includes('fails pki --verify'))
  t.equal(read('pki.calls').split('\n').filter(Boolean).length, 2, 'pki --verify ran again, for the new CRL')
  await rounds(5)
  t.equal(verdict(), '1', 'and it stays 1 without running pki again')
  t.equal(read('pki.calls').split('\n').filter(Boolean).length, 2)
  write('pki.exit', '0')
  write('swanctl/x509.pem', 'reissued')
  await until('a reissued certificate: healthy', () => verdict() === '0')
  t.pass('reissued: 0')

  // Frozen while not holding the address: nothing to take over.
  t.equal(read('setsid.calls'), '', 'no takeover so far')
  watch.kill('SIGSTOP')
  await new Promise((r) => setTimeout(r, 2500))
  watch.kill('SIGCONT')
  await rounds(3)
  t.equal(read('setsid.calls'), '', 'a sleep without the address takes nothing over')
  // Frozen while holding it: the takeover, once.
  const vip = plan.vpn!.tunnels[0].hubAddress
  write('ip.out', `3: inet    inet ${vip}/24 scope global secondary inet\n`)
  await rounds(3)
  t.equal(read('setsid.calls'), '', 'holding it, awake: nothing')
  watch.kill('SIGSTOP')
  await new Promise((r) => setTimeout(r, 2500))
  watch.kill('SIGCONT')
  await until('the takeover after the sleep', () => read('setsid.calls') !== '')
  t.match(read('setsid.calls'), /lab-hub-takeover/, 'the takeover runs')
  t.match(read('log'), `asleep while holding ${vip}`)
  await rounds(5)
  t.equal(read('setsid.calls').split('\n').filter(Boolean).length, 1, 'once')
})

t.test('the first verdict is the first round’s own: a charon missing at the start is 1 at once', async (t) => {
  // No pid file, no vici socket: charon is not running. One round only (the next is 5 s
  // away): its verdict must already be 1.
  const { verdict, start } = labMember(t, '5')
  start()
  await waitFor('the first verdict', () => Promise.resolve(verdict() !== ''), 4000, 20)
  t.equal(verdict(), '1', 'not 0 while charon was never seen')
})
