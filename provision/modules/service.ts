// Ensure a systemd unit is enabled and running (or disabled and stopped).
import { shellQuote as q } from '../ssh.js'
import type { Step } from '../runner.js'

export function service(unit: string, want: { enabled: boolean; active: boolean }): Step {
  const verb = want.active ? 'running' : 'stopped'
  return {
    name: `Ensure ${unit} is ${want.enabled ? 'enabled' : 'disabled'} and ${verb}`,
    async run(ctx) {
      const r = await ctx.host.exec(`systemctl is-enabled ${q(unit)}; systemctl is-active ${q(unit)}; systemctl show -P NeedDaemonReload ${q(unit)}`, { check: false })
      const [enabled, active, needReload] = r.stdout.trim().split('\n')
      const isEnabled = enabled === 'enabled' || enabled === 'static'
      const isActive = active === 'active'
      const commands: string[] = []
      // A unit file written earlier in this run is only seen after a daemon-reload.
      if (needReload === 'yes') commands.push('systemctl daemon-reload')
      if (isEnabled !== want.enabled) commands.push(`systemctl ${want.enabled ? 'enable' : 'disable'} ${q(unit)}`)
      if (isActive !== want.active) commands.push(`systemctl ${want.active ? 'start' : 'stop'} ${q(unit)}`)
      if (commands.length === 0) return false
      if (!ctx.dryRun) await ctx.host.exec(commands.join(' && '))
      return true
    },
  }
}

/** A handler body: restart or reload a unit. */
export const systemctl = (action: 'restart' | 'reload' | 'reload-or-restart', unit: string) => ({
  name: `${action} ${unit}`,
  run: async (ctx: { host: { exec: (c: string) => Promise<unknown> } }) => {
    await ctx.host.exec(`systemctl ${action} ${q(unit)}`)
  },
})
