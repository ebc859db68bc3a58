// A RemoteHost that runs commands on this machine with sh: lets unit tests exercise
// the provisioner's modules, shell and all, without a lab.
import { spawn } from 'node:child_process'
import { CommandError, type ExecOptions, type ExecResult, type RemoteHost } from '../../provision/ssh.js'

export class LocalHost implements RemoteHost {
  readonly commands: string[] = []
  constructor(readonly name = 'local') {}

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    this.commands.push(command)
    return new Promise((resolve, reject) => {
      const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stderr.on('data', (d) => (stderr += d))
      child.on('error', reject)
      child.on('close', (code) => {
        const result = { code: code ?? -1, stdout, stderr }
        if (result.code !== 0 && options.check !== false) reject(new CommandError(this.name, command, result))
        else resolve(result)
      })
      // A command that does not read its input may exit first: that is not an error.
      child.stdin.on('error', () => {})
      child.stdin.end(options.stdin ?? '')
    })
  }

  async close(): Promise<void> {}
}
