// Ensure a systemd unit is enabled and running (or disabled and stopped).
import { sh } from '../ssh.js'
import type { Handler, Step } from '../runner.js'

/**
 * Ensure a unit is enabled (or not) and running (or not). `startMoots`: the handlers a
 * start makes moot (a reload of the config the unit has just read at its start).
 */
export function service(unit: string, want: { enabled: boolean; active: boolean; startMoots?: string[] }): Step {
  const verb = want.active ? 'running' : 'stopped'
  return {
    name: `Ensure ${unit} is ${want.enabled ? 'enabled' : 'disabled'} and ${verb}`,
    async run(ctx) {
      const r = await ctx.host.exec(
        sh`systemctl is-enabled ${unit}; systemctl is-active ${unit}; systemctl show -P NeedDaemonReload ${unit}`,
        { check: false },
      )
      const [enabled, active, needReload] = r.stdout.trim().split('\n')
      const isEnabled = enabled === 'enabled' || enabled === 'static'
      const isActive = active === 'active'
      const commands: string[] = []
      // A unit file written earlier in this run is only seen after a daemon-reload.
      if (needReload === 'yes') commands.push('systemctl daemon-reload')
      // --no-reload: enabling only links the unit for the next boot, which reads the
      // links anyway; systemd's implied daemon-reload took 7 s on an emulated VM, once per
      // unit enabled. A unit file new to systemd gets its reload above.
      if (isEnabled !== want.enabled)
        commands.push(sh`systemctl ${want.enabled ? 'enable' : 'disable'} --no-reload ${unit}`)
      const starts = want.active && !isActive
      if (isActive !== want.active) commands.push(sh`systemctl ${want.active ? 'start' : 'stop'} ${unit}`)
      if (commands.length === 0) return false
      if (!ctx.dryRun) await ctx.host.exec(commands.join(' && '))
      return starts && want.startMoots ? { moots: want.startMoots } : true
    },
  }
}

/**
 * systemd's daemon-reload, only when this unit's files changed since systemd read them
 * (or it has never read them). A daemon-reload took 7 s on an emulated VM: a first
 * provision of a VM gateway ran four, one per handler, though the first (or the step
 * that started the unit) had already read every file.
 */
export const daemonReloadIfStale = (unit: string) =>
  sh`case "$(systemctl show -p NeedDaemonReload -p LoadState --value ${unit})" in *yes*|*not-found*) systemctl daemon-reload ;; esac`

/**
 * A handler that restarts or reloads a unit: `check` first (a configuration test, so
 * that a bad file never reaches a running daemon), `daemonReload` when the step that
 * notified it may have changed a unit file (systemd then reads them again, if they did).
 */
export function unitHandler(
  name: string,
  action: 'restart' | 'reload',
  unit: string,
  o: { check?: string; daemonReload?: boolean } = {},
): Handler {
  const command = [o.check, o.daemonReload ? daemonReloadIfStale(unit) : undefined, sh`systemctl ${action} ${unit}`]
    .filter(Boolean)
    .join(' && ')
  return { ...commandHandler(name, command), unit: { name: unit, action } }
}

/** A handler that runs one command (a reload that is not systemd's: nft -f, swanctl --load-all). */
export function commandHandler(name: string, command: string): Handler {
  return {
    name,
    run: async (ctx) => {
      await ctx.host.exec(command)
    },
  }
}
