// Ensure a system user (and its group) for a service: no home, no shell, no password.
import { sh } from '../ssh.js'
import { converge } from './command.js'

export function systemUser(name: string) {
  return converge(
    `Ensure the system user ${name} exists (no login)`,
    async (ctx) =>
      (await ctx.host.exec(sh`getent passwd ${name}`, { check: false })).stdout.split(':')[6]?.trim() ===
      '/usr/sbin/nologin',
    async (ctx) => {
      await ctx.host.exec(
        sh`id -u ${name} >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${name}`,
      )
    },
  )
}
