// A root shell kept open on one SSH channel, running one command after another.
//
// Why: every command used to be its own SSH session channel (sshd forks, the login
// shell starts) and its own sudo (sudo loads its plugins and PAM, logs three lines to
// the journal). On an emulated VM that is most of a command's cost: measured on a
// provisioned gateway VM, 0.3 to 0.4 s for the channel and 0.5 to 0.8 s more for sudo,
// against 0.08 s for `sh -c true` itself. A kept shell pays both once; each command is
// then one `sh -c` started by it, with its own standard input (given, or /dev/null) and
// its own process, so nothing a command does (cd, export, exit) reaches the next one.
//
// The protocol, written to the shell's standard input for each command:
//   sh -c 'COMMAND' </dev/null           (or: printf %s BASE64 | base64 -d | sh -c 'COMMAND')
//   printf '\n%s %d\n' MARK "$?"; printf '\n%s\n' MARK >&2
// The command's output is everything before "\nMARK" on each stream: the marker is new
// for every command (a random prefix of the shell's own and a sequence number), and
// starts with a newline so output without a trailing newline is read whole. The exit
// status comes after the marker on standard output.
import { randomBytes } from 'node:crypto'
import { shellQuote } from './shell-quote.js'

/** A command's outcome (ssh.ts's ExecResult has the same shape; ssh.ts imports this file, not the other way). */
export interface ShellResult {
  code: number
  stdout: string
  stderr: string
}

/** What the kept shell needs of a channel: the shell's input, its two outputs, its end (it ends with its connection). */
export interface ShellPipes {
  write(text: string): void
  onStdout(f: (chunk: Buffer) => void): void
  onStderr(f: (chunk: Buffer) => void): void
  /** Called once when the shell is gone (it exited, the channel closed). */
  onClose(f: () => void): void
}

interface Pending {
  mark: string
  /** Each stream's output and the status, once their markers have come. */
  stdout?: Buffer
  stderr?: Buffer
  code?: number
  resolve: (r: ShellResult) => void
  reject: (e: Error) => void
}

export class ShellGoneError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ShellGoneError'
  }
}

/**
 * One output stream's bytes as they came. A marker is looked for only where it could
 * newly be (the new bytes and a marker's length before them), and the bytes are joined
 * once, when a command's output is taken: a large output costs its length, not its
 * square (joining and searching all of it again at each read did).
 */
class Received {
  private chunks: Buffer[] = []
  length = 0
  /** How far the bytes were searched for a marker that was not there yet. */
  private searched = 0

  push(chunk: Buffer) {
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  /** The offset of a marker, looked for in what came since the last look (and a marker's length before it), or -1. */
  findMarker(marker: string): number {
    const at = this.find(marker, this.searched - marker.length)
    if (at < 0) this.searched = this.length
    return at
  }

  /** The offset of needle at or after from, or -1. */
  find(needle: string, from: number): number {
    const start = Math.max(0, from)
    // The chunks that hold [start, length), walked from the end (the new bytes are there).
    let i = this.chunks.length
    let at = this.length
    while (i > 0 && at > start) at -= this.chunks[--i].length
    const region = Buffer.concat(this.chunks.slice(i)).subarray(start - at)
    const found = region.indexOf(needle)
    return found < 0 ? -1 : start + found
  }

  /** The first n bytes, taken out; what follows them stays. */
  take(n: number): Buffer {
    const all = Buffer.concat(this.chunks)
    this.chunks = all.length > n ? [all.subarray(n)] : []
    this.length = all.length - n
    this.searched = 0
    return all.subarray(0, n)
  }

  toString(): string {
    return Buffer.concat(this.chunks).toString()
  }
}

export class KeptShell {
  private readonly prefix = `LAB-KEPT-${randomBytes(8).toString('hex')}`
  private seq = 0
  private pending?: Pending
  private out = new Received()
  private err = new Received()
  private gone = false
  /** Commands that finished in this shell. */
  completed = 0
  /** What the shell wrote on its standard error outside any command (sudo's refusal, say). */
  private stray = ''

  constructor(private readonly pipes: ShellPipes) {
    pipes.onStdout((c) => this.read('out', c))
    pipes.onStderr((c) => this.read('err', c))
    pipes.onClose(() => this.closed())
  }

  get busy(): boolean {
    return this.pending !== undefined
  }

  get alive(): boolean {
    return !this.gone
  }

  run(command: string, stdin?: string): Promise<ShellResult> {
    if (this.gone) return Promise.reject(new ShellGoneError('the kept shell is gone'))
    if (this.pending) return Promise.reject(new Error('the kept shell runs one command at a time'))
    const mark = `${this.prefix}.${++this.seq}`
    // The input, if any, goes in as base64 (any bytes, one word) on the same line as the
    // command: a here-document would have to follow a command that may span lines.
    const script =
      stdin === undefined
        ? `sh -c ${shellQuote(command)} </dev/null\n`
        : `printf %s ${shellQuote(Buffer.from(stdin).toString('base64'))} | base64 -d | sh -c ${shellQuote(command)}\n`
    return new Promise((resolve, reject) => {
      this.pending = { mark, resolve, reject }
      this.pipes.write(
        `${script}printf '\\n%s %d\\n' ${shellQuote(mark)} "$?"; printf '\\n%s\\n' ${shellQuote(mark)} >&2\n`,
      )
    })
  }

  private read(stream: 'out' | 'err', chunk: Buffer) {
    const p = this.pending
    if (!p) {
      if (stream === 'err') this.stray = (this.stray + chunk.toString()).slice(-2000)
      return
    }
    ;(stream === 'out' ? this.out : this.err).push(chunk)
    this.settle(p)
  }

  /** Takes each stream's output up to its marker, once the marker has come. */
  private settle(p: Pending) {
    if (p.code === undefined) {
      const marker = `\n${p.mark} `
      const at = this.out.findMarker(marker)
      // The status follows the marker, up to its newline (which may come in a later read).
      const eol = at < 0 ? -1 : this.out.find('\n', at + marker.length)
      if (eol >= 0) {
        p.stdout = this.out.take(at)
        p.code = Number(
          this.out
            .take(eol + 1 - at)
            .toString()
            .slice(marker.length)
            .trim(),
        )
      }
    }
    if (p.stderr === undefined) {
      const marker = `\n${p.mark}\n`
      const at = this.err.findMarker(marker)
      if (at >= 0) {
        p.stderr = this.err.take(at)
        this.err.take(marker.length)
      }
    }
    if (p.stdout && p.code !== undefined && p.stderr) {
      this.pending = undefined
      this.completed++
      // Trimmed, as node-ssh's execCommand gives them (what every caller was written against).
      p.resolve({
        code: p.code,
        stdout: p.stdout.toString().trim(),
        stderr: p.stderr.toString().trim(),
      })
    }
  }

  private closed() {
    if (this.gone) return
    this.gone = true
    const p = this.pending
    this.pending = undefined
    if (p) {
      const said = (this.stray || this.err.toString()).trim()
      p.reject(new ShellGoneError(`the kept shell ended${said ? ` (${said.split('\n').slice(-3).join('; ')})` : ''}`))
    }
  }
}
