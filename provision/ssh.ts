// How the provisioner and the tests talk to a host: one small interface, so the step
// runner can be tested against a fake host and the real one is node-ssh underneath.
import { NodeSSH } from 'node-ssh'
import fs from 'node:fs'
import type { InventoryEntry } from './inventory.js'

export interface ExecResult { code: number; stdout: string; stderr: string }
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
  constructor(readonly host: string, readonly command: string, readonly result: ExecResult) {
    const detail = (result.stderr || result.stdout).trim().split('\n').slice(-5).join('\n    ')
    super(`on ${host}: \`${command}\` exited with ${result.code}${detail ? `:\n    ${detail}` : ''}`)
    this.name = 'CommandError'
  }
}

export class UnreachableError extends Error {
  constructor(readonly host: string, reason: string) {
    super(`host ${host} does not answer: ${reason}. Is it up? Try \`vagrant status ${host}\`, then \`vagrant up ${host}\`.`)
    this.name = 'UnreachableError'
  }
}

/** Quote one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}

export function sudoWrap(command: string): string {
  return `sudo -n -- sh -c ${shellQuote(command)}`
}

export class SshHost implements RemoteHost {
  private constructor(readonly name: string, private ssh: NodeSSH) {}

  static async connect(entry: InventoryEntry, timeoutMs = 15000): Promise<SshHost> {
    // A host that accepted the TCP connection but did not finish the handshake in time
    // is there and slow (an emulated VM whose CPU is busy: seen under QEMU's TCG), so it
    // gets two more tries; one that refuses or cannot be reached fails at once.
    for (let attempt = 1; ; attempt++) {
      const ssh = new NodeSSH()
      try {
        await ssh.connect({
          host: entry.hostName,
          port: entry.port,
          username: entry.user,
          privateKey: fs.readFileSync(entry.identityFile, 'utf8'),
          readyTimeout: timeoutMs,
          keepaliveInterval: 5000,
        })
        return new SshHost(entry.name, ssh)
      } catch (e) {
        ssh.dispose()
        const message = (e as Error).message
        if (attempt < 3 && /waiting for handshake/i.test(message)) continue
        throw new UnreachableError(entry.name, `SSH to ${entry.user}@${entry.hostName}:${entry.port} failed (${message}${attempt > 1 ? `, ${attempt} tries` : ''})`)
      }
    }
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const line = options.sudo === false ? command : sudoWrap(command)
    const r = await this.ssh.execCommand(line, { stdin: options.stdin })
    const result = { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr }
    if (result.code !== 0 && options.check !== false) throw new CommandError(this.name, command, result)
    return result
  }

  /** A command whose output is streamed as it comes (bytes, as sent: a pcap stays whole). */
  async execStream(command: string, handlers: { onStdout: (d: Buffer) => void; onStderr: (d: Buffer) => void }): Promise<{ code: number }> {
    const r = await this.ssh.execCommand(sudoWrap(command), { onStdout: handlers.onStdout, onStderr: handlers.onStderr })
    return { code: r.code ?? -1 }
  }

  async close(): Promise<void> {
    // destroy, not end: a host that is already gone would keep the socket (and the
    // process) waiting for a goodbye that never comes.
    this.ssh.connection?.destroy()
    this.ssh.dispose()
  }
}
