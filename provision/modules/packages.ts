// Ensure Debian packages are installed. On the lxc box they all are already (the box
// is built with box/packages.txt, and the lab has no network); on VMs this installs
// them with apt, which is where the VMs' NAT interface is needed.
import { sh } from '../ssh.js'
import type { Step } from '../runner.js'

export function packages(name: string, list: string[]): Step {
  return {
    name,
    async run(ctx) {
      const r = await ctx.host.exec(sh`dpkg-query -W -f='\${Package} \${db:Status-Status}\\n' ${list}`, {
        check: false,
      })
      const installed = new Set(
        r.stdout
          .split('\n')
          .filter((l) => l.endsWith(' installed'))
          .map((l) => l.split(' ')[0]),
      )
      const missing = list.filter((p) => !installed.has(p))
      if (missing.length === 0) return false
      if (ctx.dryRun) return true
      await ctx.host.exec(
        sh`export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends ${missing}`,
      )
      return true
    },
  }
}
