// The provisioner's modules run their real shell here, on this machine, in a temp dir.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { file } from '../../provision/modules/file.js'
import { converge } from '../../provision/modules/command.js'
import { fakeContext } from '../lib/fake.js'
import { LocalHost } from '../lib/local-host.js'

const me = os.userInfo().username
const group = (() => {
  try {
    return fs
      .readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(os.userInfo().gid))!
      .split(':')[0]
  } catch {
    return me
  }
})()

t.test('file: writes once, then reports ok; fixes mode alone without rewriting', async (t) => {
  const dir = t.testdir({})
  const target = path.join(dir, 'sub', 'app.conf')
  const step = file('Ensure app.conf', { path: target, content: 'a = 1\n', mode: '0640', owner: me, group })
  const ctx = fakeContext(new LocalHost())
  t.equal(await step.run(ctx), true, 'changed: the file did not exist')
  t.equal(fs.readFileSync(target, 'utf8'), 'a = 1\n')
  t.equal(fs.statSync(target).mode & 0o777, 0o640)
  t.equal(await step.run(ctx), false, 'ok: nothing to do the second time')
  fs.chmodSync(target, 0o666)
  t.equal(await step.run(ctx), true, 'changed: the mode drifted')
  t.equal(fs.statSync(target).mode & 0o777, 0o640)
  t.notOk(fs.existsSync(`${target}.lab-staged`), 'no staged copy is left behind')
})

t.test('file: dry-run reports the change and writes nothing', async (t) => {
  const dir = t.testdir({ 'x.conf': 'old\n' })
  const target = path.join(dir, 'x.conf')
  const step = file('Ensure x.conf', { path: target, content: 'new\n', owner: me, group })
  t.equal(await step.run(fakeContext(new LocalHost(), true)), true)
  t.equal(fs.readFileSync(target, 'utf8'), 'old\n', 'untouched')
})

t.test('file: a staged copy that fails validation never replaces the live file', async (t) => {
  const dir = t.testdir({ 'svc.conf': 'good\n' })
  const target = path.join(dir, 'svc.conf')
  const step = file('Ensure svc.conf', {
    path: target,
    content: 'bad\n',
    owner: me,
    group,
    validate: 'grep -q good {}',
  })
  await t.rejects(step.run(fakeContext(new LocalHost())), /exited with 3/)
  t.equal(fs.readFileSync(target, 'utf8'), 'good\n', 'the live file is unchanged')
  t.notOk(fs.existsSync(`${target}.lab-staged`), 'the rejected copy is removed')
  const ok = file('Ensure svc.conf', {
    path: target,
    content: 'good v2\n',
    owner: me,
    group,
    validate: 'grep -q good {}',
  })
  t.equal(await ok.run(fakeContext(new LocalHost())), true)
  t.equal(fs.readFileSync(target, 'utf8'), 'good v2\n')
})

t.test('converge: fixes, then verifies its own fix', async (t) => {
  const dir = t.testdir({})
  const flag = path.join(dir, 'flag')
  const step = converge(
    'Ensure flag',
    async () => fs.existsSync(flag),
    async () => fs.writeFileSync(flag, ''),
  )
  t.equal(await step.run(fakeContext(new LocalHost())), true)
  t.equal(await step.run(fakeContext(new LocalHost())), false)
  const broken = converge(
    'Ensure the impossible',
    async () => false,
    async () => {},
  )
  await t.rejects(broken.run(fakeContext(new LocalHost())), /still not right after the fix/)
})

t.test(
  'file: the new content dates from its arrival, not its staging: a watcher that compares times sees it',
  async (t) => {
    const dir = t.testdir({ 'lab.crl': 'old\n' })
    const target = path.join(dir, 'lab.crl')
    const stamp = path.join(dir, 'verified')
    // A watcher's run between the staging and the move (the hub watch's pki --verify): its
    // stamp is written while the staged copy waits for its validation.
    const step = file('Ensure lab.crl', {
      path: target,
      content: 'new\n',
      owner: me,
      group,
      validate: `test -s {} && sleep 0.05 && touch ${stamp} && sleep 0.05`,
    })
    t.equal(await step.run(fakeContext(new LocalHost())), true)
    t.equal(fs.readFileSync(target, 'utf8'), 'new\n')
    t.ok(
      fs.statSync(target).mtimeMs > fs.statSync(stamp).mtimeMs,
      'newer than a stamp taken before it arrived: the watcher looks at it again',
    )
  },
)
