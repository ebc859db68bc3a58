// How the provisioner and the tests talk to a host: one small interface, so the step
// runner can be tested against a fake host and the real one is node-ssh underneath.
import { NodeSSH } from 'node-ssh'
import type { ClientChannel } from 'ssh2'
import fs from 'node:fs'
import type { InventoryEntry } from './inventory.js'
import { KeptShell, ShellGoneError } from './kept-shell.js'
import { shellQuote } from './shell-quote.js'

export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}
export interface ExecOptions {
  /** Run as root through sudo (the default for the provisioner). */
  sudo?: boolean
  /** Standard input for the command. */
  stdin?: string
  /** Return a non-zero exit as a result instead of throwing. */
  check?: boolean
}

export interface RemoteHost {
  readonly name: string
  exec(command: string, options?: ExecOptions): Promise<ExecResult>
  close(): Promise<void>
}

/** A command that failed on a host: carries everything needed to act on it. */
export class CommandError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly result: ExecResult,
  ) {
    const detail = (result.stderr || result.stdout).trim().split('\n').slice(-5).join('\n    ')
    super(`on ${host}: \`${command}\` exited with ${result.code}${detail ? `:\n    ${detail}` : ''}`)
    this.name = 'CommandError'
  }
}

export class UnreachableError extends Error {
  constructor(
    readonly host: string,
    reason: string,
  ) {
    super(
      `host ${host} does not answer: ${reason}. Is it up? Try \`vagrant status ${host}\`, then \`vagrant up ${host}\`.`,
    )
    this.name = 'UnreachableError'
  }
}

export { shellQuote }

/** A fragment that is shell already (a redirection, a command built by sh), passed through by sh. */
export class Shell {
  constructor(readonly text: string) {}
}
export const raw = (text: string) => new Shell(text)

type Word = string | number | Shell | readonly (string | number)[]

/**
 * A remote command whose every interpolated value is one shell word, quoted where it
 * must be (a list: one word each): sh`rm -f ${files}`. The command's own syntax is in
 * the literal parts; a fragment that is already shell goes in as raw(...) or another sh.
 */
export function sh(strings: TemplateStringsArray, ...values: Word[]): string {
  const word = (v: Word): string =>
    v instanceof Shell
      ? v.text
      : Array.isArray(v)
        ? v.map((x) => shellQuote(String(x))).join(' ')
        : shellQuote(String(v))
  return strings.reduce((out, s, i) => out + s + (i < values.length ? word(values[i]) : ''), '')
}

export function sudoWrap(command: string): string {
  return `sudo -n -- sh -c ${shellQuote(command)}`
}

/** Root shells kept per connection: as many commands at once as a host gets from one program, in practice. */
const MAX_SHELLS = 4

export class SshHost implements RemoteHost {
  /** Why the connection went away under us (an unanswered keepalive, a reset), if it did. */
  private lost?: string
  private closed = false
  /** ssh2's client, held here: node-ssh forgets it on 'end', before its socket is gone. */
  private client?: NodeSSH['connection']
  /**
   * Root shells kept open on this connection (provision/kept-shell.ts: a command then
   * costs one `sh -c`, not an SSH session and a sudo). As many as commands ran at once,
   * up to MAX_SHELLS; beyond that a command gets its own session, as before.
   */
  private shells: KeptShell[] = []
  private claimed = new Set<KeptShell>()
  /** Why no root shell can be kept here (sudo refused it, LAB_KEPT_SHELL=0), once known: every command then gets its own session. */
  private noShell = process.env.LAB_KEPT_SHELL === '0' ? 'LAB_KEPT_SHELL=0' : undefined

  private constructor(
    readonly name: string,
    private entry: InventoryEntry,
    private timeoutMs: number,
    private ssh: NodeSSH,
  ) {
    this.watch(ssh)
  }

  static async connect(entry: InventoryEntry, timeoutMs = 15000): Promise<SshHost> {
    return new SshHost(entry.name, entry, timeoutMs, await open(entry, timeoutMs))
  }

  private watch(ssh: NodeSSH) {
    this.client = ssh.connection
    // node-ssh listens for errors only until the handshake is done: a later one (a
    // keepalive left unanswered by a stalled guest, a reset) would be thrown from an
    // event emitter with no listener and end the whole process. It is recorded instead,
    // and the next command connects again.
    ssh.connection?.on('error', (e: Error) => {
      this.lost ??= e.message
    })
    ssh.connection?.on('close', () => {
      this.lost ??= 'the connection closed'
    })
  }

  /** The connection, made again if it was lost since the last command. */
  private async live(): Promise<NodeSSH> {
    if (this.closed) throw new Error(`the connection to ${this.name} was closed by this program`)
    if (!this.lost && this.ssh.isConnected()) return this.ssh
    // Commands that find it lost at once (a poll of a host that is down) share one new
    // connection: each making its own would leave all but the last open, and the process
    // could not exit.
    this.reconnecting ??= this.reconnect().finally(() => (this.reconnecting = undefined))
    return this.reconnecting
  }

  private reconnecting?: Promise<NodeSSH>

  private async reconnect(): Promise<NodeSSH> {
    this.client?.destroy()
    this.ssh.dispose()
    const ssh = await open(
      this.entry,
      this.timeoutMs,
      `the connection was lost (${this.lost ?? 'closed'}) and made again`,
    )
    if (this.closed) {
      // closed while it was being made: it goes too
      ssh.connection?.destroy()
      ssh.dispose()
      throw new Error(`the connection to ${this.name} was closed by this program`)
    }
    this.ssh = ssh
    this.lost = undefined
    this.shells = [] // they went with the old connection
    this.claimed.clear()
    this.watch(ssh)
    return ssh
  }

  /** An idle root shell on the live connection: a kept one, a new one, or none (all busy, or refused). */
  private async idleShell(ssh: NodeSSH): Promise<KeptShell | undefined> {
    this.shells = this.shells.filter((s) => s.alive)
    // Claimed at once: the command runs a turn later, and another must not take it meanwhile.
    const idle = this.shells.find((s) => !s.busy && !this.claimed.has(s))
    if (idle) this.claimed.add(idle)
    if (idle || this.noShell || this.shells.length >= MAX_SHELLS) return idle
    const channel = await new Promise<ClientChannel | undefined>((resolve) => {
      // A channel refused (the server's MaxSessions reached) leaves the command to its own session.
      const client = ssh.connection
      if (!client) return resolve(undefined)
      client.exec('sudo -n -- sh', (err, ch) => resolve(err ? undefined : ch))
    })
    if (!channel) return undefined
    const shell = new KeptShell({
      write: (text) => channel.write(text),
      onStdout: (f) => channel.on('data', f),
      onStderr: (f) => channel.stderr.on('data', f),
      onClose: (f) => channel.on('close', f),
    })
    this.shells.push(shell)
    this.claimed.add(shell)
    // Its first command says it started: sudo may refuse (a password asked, a user not in
    // sudoers), and then every command goes its own way, where sudo says why.
    try {
      await shell.run('true')
    } catch (e) {
      // Refused, on a connection still up; a connection lost meanwhile is the next command's to find.
      if (!(await this.gone(ssh))) this.noShell = (e as Error).message
      this.shells = this.shells.filter((s) => s !== shell)
      this.claimed.delete(shell)
      return undefined
    }
    return shell
  }

  /** Whether this connection is lost, asked after a channel of it closed: ssh2 tells the channels first, the connection just after. */
  private async gone(ssh: NodeSSH): Promise<boolean> {
    await new Promise((r) => setImmediate(r))
    return !!this.lost || !ssh.isConnected()
  }

  /** Runs one command as root in a kept shell; undefined if none could be had. */
  private async inShell(command: string, stdin: string | undefined): Promise<ExecResult | undefined> {
    const ssh = await this.live()
    const shell = await this.idleShell(ssh)
    if (!shell) return undefined
    try {
      return await shell.run(command, stdin)
    } catch (e) {
      if (!(e instanceof ShellGoneError)) throw e
      if (await this.gone(ssh))
        throw new UnreachableError(
          this.name,
          `the SSH connection was lost while \`${command}\` ran (${this.lost ?? 'closed'}); whether it finished is unknown`,
        )
      throw new UnreachableError(this.name, `${e.message} while \`${command}\` ran; whether it finished is unknown`)
    } finally {
      this.claimed.delete(shell)
    }
  }

  /** Runs one command; a connection lost while it ran leaves its outcome unknown, which is said, never read as an exit code. */
  private async run(line: string, options: Parameters<NodeSSH['execCommand']>[1], command: string) {
    const ssh = await this.live()
    const r = await ssh.execCommand(line, options)
    if (this.lost && r.code == null)
      throw new UnreachableError(
        this.name,
        `the SSH connection was lost while \`${command}\` ran (${this.lost}); whether it finished is unknown`,
      )
    return r
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const kept = options.sudo === false ? undefined : await this.inShell(command, options.stdin)
    const result = kept ?? (await this.oneSession(command, options))
    if (result.code !== 0 && options.check !== false) throw new CommandError(this.name, command, result)
    return result
  }

  /** A command in its own SSH session (and its own sudo, unless sudo is false). */
  private async oneSession(command: string, options: ExecOptions): Promise<ExecResult> {
    const line = options.sudo === false ? command : sudoWrap(command)
    const r = await this.run(line, { stdin: options.stdin }, command)
    return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr }
  }

  /** A command whose output is streamed as it comes (bytes, as sent: a pcap stays whole). */
  async execStream(
    command: string,
    handlers: { onStdout: (d: Buffer) => void; onStderr: (d: Buffer) => void },
  ): Promise<{ code: number }> {
    const r = await this.run(sudoWrap(command), { onStdout: handlers.onStdout, onStderr: handlers.onStderr }, command)
    return { code: r.code ?? -1 }
  }

  close(): Promise<void> {
    this.closed = true
    // destroy, not end: a host that is already gone would keep the socket (and the
    // process) waiting for a goodbye that never comes.
    this.client?.destroy()
    this.ssh.dispose()
    return Promise.resolve()
  }
}

/**
 * One SSH connection to a host. A host that accepted the TCP connection but did not
 * finish the handshake in time is there and slow (an emulated VM whose CPU is busy: seen
 * under QEMU's TCG), so it gets two more tries; one that refuses or cannot be reached
 * fails at once.
 */
async function open(entry: InventoryEntry, timeoutMs: number, context?: string): Promise<NodeSSH> {
  for (let attempt = 1; ; attempt++) {
    const ssh = new NodeSSH()
    try {
      await ssh.connect({
        host: entry.hostName,
        port: entry.port,
        username: entry.user,
        privateKey: fs.readFileSync(entry.identityFile, 'utf8'),
        readyTimeout: timeoutMs,
        // A guest under emulation on a loaded machine can stall for tens of seconds
        // (measured: both gateway VMs missed three keepalives 5 s apart right after
        // provisioning); a minute of silence, not fifteen seconds, means it is gone.
        keepaliveInterval: 10_000,
        keepaliveCountMax: 6,
      })
      return ssh
    } catch (e) {
      ssh.dispose()
      const message = (e as Error).message
      if (attempt < 3 && /waiting for handshake/i.test(message)) continue
      throw new UnreachableError(
        entry.name,
        `SSH to ${entry.user}@${entry.hostName}:${entry.port} failed (${message}${attempt > 1 ? `, ${attempt} tries` : ''}${context ? `; ${context}` : ''})`,
      )
    }
  }
}
