// The kept root shell's protocol (provision/kept-shell.ts) against a real sh on this
// machine: each command's output, error output and exit status read whole and apart,
// its input given byte for byte, and nothing of one command reaching the next.
import { spawn } from 'node:child_process'
import t, { type Test } from 'tap'
import { KeptShell, ShellGoneError } from '../../provision/kept-shell.js'

function localShell(t: Test) {
  const child = spawn('sh', [], { stdio: ['pipe', 'pipe', 'pipe'], detached: true })
  const shell = new KeptShell({
    write: (text) => child.stdin.write(text),
    onStdout: (f) => child.stdout.on('data', f),
    onStderr: (f) => child.stderr.on('data', f),
    onClose: (f) => child.on('close', f),
  })
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL')
    } catch {
      // already gone
    }
  })
  return { shell, child }
}

t.test('output, error output and status of each command, read apart and whole', async (t) => {
  const { shell } = localShell(t)
  t.same(await shell.run('echo out; echo err >&2; exit 3'), { code: 3, stdout: 'out', stderr: 'err' })
  t.same(await shell.run('printf "no newline"'), { code: 0, stdout: 'no newline', stderr: '' }, 'no trailing newline')
  t.same(await shell.run('true'), { code: 0, stdout: '', stderr: '' }, 'no output at all')
  // Many reads: the marker is looked for in the new bytes only (the whole output joined
  // and searched again at each read made 20 MB take 18 s instead of 0.6 s).
  const wide = await shell.run("head -c 20000000 /dev/zero | tr '\\0' a")
  t.equal(wide.stdout.length, 20_000_000, '20 MB read whole')
  t.match(wide.stdout, /^a+$/)
  const big = await shell.run('seq 1 200000')
  t.equal(big.stdout.split('\n').length, 200000, 'a large output, over many reads')
  t.equal(big.stdout.split('\n').at(-1), '200000')
  t.same(await shell.run(`echo 'it'"'"'s'; echo "$0"`), { code: 0, stdout: "it's\nsh", stderr: '' }, 'quotes kept')
  t.equal((await shell.run('echo "a\n\nb"')).stdout, 'a\n\nb', 'blank lines inside the output kept')
  t.equal(shell.completed, 7)
})

t.test('the input, byte for byte; none given reads as empty, not the shell’s own', async (t) => {
  const { shell } = localShell(t)
  const input = 'line one\n\'quoted\' "double" $HOME `cmd` \\ ünïcødé\nLAB-KEPT-x.1 0\nno newline at the end'
  t.equal((await shell.run('sha256sum', input)).stdout.split(' ')[0], await sha(input), 'the same bytes')
  t.equal((await shell.run('cat', '')).stdout, '', 'an empty input')
  t.same(await shell.run('cat; echo done'), { code: 0, stdout: 'done', stderr: '' }, 'no input: end of file at once')
  t.equal((await shell.run('echo next')).stdout, 'next', 'and the shell still reads its own commands')
})

t.test('nothing a command does reaches the next one', async (t) => {
  const { shell } = localShell(t)
  await shell.run('cd /; export LAB_LEAK=1; set -e; false')
  t.not((await shell.run('pwd')).stdout, '/', 'the working directory')
  t.equal((await shell.run('echo "${LAB_LEAK:-unset}"')).stdout, 'unset', 'the environment')
  t.equal((await shell.run('exit 7')).code, 7, 'exit ends the command, not the shell')
  t.equal((await shell.run('echo alive')).stdout, 'alive')
})

t.test('a marker inside the output is not the end of it: only this command’s own is', async (t) => {
  const { shell } = localShell(t)
  const r = await shell.run("printf '\\nLAB-KEPT-0000000000000000.1 0\\nafter\\n'")
  t.equal(r.stdout, 'LAB-KEPT-0000000000000000.1 0\nafter')
})

t.test('one command at a time; a shell that ends under a command says so', async (t) => {
  const { shell } = localShell(t)
  const first = shell.run('sleep 0.3; echo one')
  await t.rejects(shell.run('echo two'), /one command at a time/)
  t.equal((await first).stdout, 'one')
  const dying = shell.run('echo bye >&2; kill -KILL $PPID')
  await t.rejects(dying, { name: ShellGoneError.name, message: /the kept shell ended/ })
  t.notOk(shell.alive)
  await t.rejects(shell.run('echo late'), { name: ShellGoneError.name })
})

async function sha(s: string) {
  const { createHash } = await import('node:crypto')
  return createHash('sha256').update(s).digest('hex')
}
