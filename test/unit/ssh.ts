// SshHost against an SSH server in this process (ssh2's own): what a connection lost
// under a long test does. Seen in CI: a gateway VM under emulation left three keepalives
// unanswered, node-ssh had no error listener any more, and the error ended the whole
// test process ("Keepalive timeout", exit 1, every later case of the file missing).
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import ssh2 from 'ssh2'
import t, { type Test } from 'tap'
import { SshHost, UnreachableError } from '../../provision/ssh.js'

const { Server, utils } = ssh2

/**
 * A new ed25519 key in OpenSSH form that ssh2 itself parses: now and then (about one
 * run in three here) ssh2's generator writes one its own parser calls malformed.
 */
function ed25519Key(): string {
  for (;;) {
    const key = utils.generateKeyPairSync('ed25519').private
    if (!(utils.parseKey(key) instanceof Error)) return key
  }
}

/** An SSH server that runs `echo` and hangs on anything else; its TCP connections are ours to cut. */
async function sshServer(t: Test) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssh-unit-'))
  fs.writeFileSync(path.join(dir, 'id'), ed25519Key(), { mode: 0o600 })
  const server = new Server({ hostKeys: [ed25519Key()] }, (client) => {
    client.on('error', () => {})
    client.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])))
    client.on('ready', () =>
      client.on('session', (accept) =>
        accept().on('exec', (accept, _reject, info) => {
          const channel = accept()
          const echo = /^sudo -n -- sh -c '?echo (\w+)'?$/.exec(info.command)
          if (!echo) return // hangs: the command is still running when the test cuts the line
          channel.write(`${echo[1]}\n`)
          channel.exit(0)
          channel.end()
        }),
      ),
    )
  })
  const sockets: net.Socket[] = []
  let connections = 0
  const front = net.createServer((socket) => {
    connections++
    sockets.push(socket)
    server.injectSocket(socket)
  })
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
  const port = (front.address() as net.AddressInfo).port
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    front.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return {
    entry: { name: 'fake', hostName: '127.0.0.1', port, user: 'vagrant', identityFile: path.join(dir, 'id') },
    /** Resets every connection made so far (a RST: the client sees an error, not a goodbye). */
    cut: () => {
      for (const s of sockets.splice(0)) s.resetAndDestroy()
    },
    connections: () => connections,
  }
}

t.test('a connection reset between commands is made again by the next command, and the process lives on', async (t) => {
  const fake = await sshServer(t)
  const host = await SshHost.connect(fake.entry)
  t.teardown(() => host.close())
  t.equal((await host.exec('echo one')).stdout, 'one')
  fake.cut()
  // Give the reset time to reach the client: it is an 'error' event with no command running.
  await new Promise((r) => setTimeout(r, 200))
  t.equal((await host.exec('echo two')).stdout, 'two', 'the next command runs on a new connection')
  t.equal(fake.connections(), 2, 'one new connection, made by that command')
})

t.test('commands that find the connection lost at once share one new connection: none is left open', async (t) => {
  const fake = await sshServer(t)
  const host = await SshHost.connect(fake.entry)
  t.teardown(() => host.close())
  fake.cut()
  await new Promise((r) => setTimeout(r, 200))
  // As a poll does while a host is down and back: every command asks before the new
  // connection is made. Each made its own, and all but the last were never closed
  // (a test file that could not exit: seen in failover.ts).
  const outs = await Promise.all(['a', 'b', 'c'].map((w) => host.exec(`echo ${w}`)))
  t.same(
    outs.map((o) => o.stdout),
    ['a', 'b', 'c'],
  )
  t.equal(fake.connections(), 2, 'one new connection for the three')
})

t.test(
  'a connection lost while a command runs: its outcome is said to be unknown, not read as an exit code',
  async (t) => {
    const fake = await sshServer(t)
    const host = await SshHost.connect(fake.entry)
    t.teardown(() => host.close())
    const running = host.exec('sleep 3600', { check: false })
    setTimeout(fake.cut, 300)
    await t.rejects(running, {
      name: UnreachableError.name,
      message: /lost while `sleep 3600` ran .*whether it finished is unknown/,
    })
    t.equal((await host.exec('echo after')).stdout, 'after', 'and the host is usable again')
  },
)

t.test('a host closed by this program is not reconnected behind its back', async (t) => {
  const fake = await sshServer(t)
  const host = await SshHost.connect(fake.entry)
  await host.close()
  await t.rejects(host.exec('echo late'), /closed by this program/)
  t.equal(fake.connections(), 1)
})
