// One provisioning run: inventory from Vagrant, all hosts in parallel, each host's
// roles through the step runner, a recap per host. A host that cannot be reached is
// reported by name and the others are still provisioned.
import { gatherFacts } from './facts.js'
import { vagrantInventory, type Inventory, type InventoryEntry, type InventoryHost } from './inventory.js'
import { rolesFor } from './roles/index.js'
import { counts, runRoles, type HostRecap, type Reporter } from './runner.js'
import { SshHost, type RemoteHost } from './ssh.js'
import type { Plan } from './plan.js'

/** Present on a host only after a complete, successful provisioning run. */
export const PROVISIONED = '/etc/lab/provisioned'

export interface ProvisionOptions {
  plan: Plan
  /** Only these hosts (default: all in the topology). */
  only?: string[]
  dryRun?: boolean
  repoRoot: string
  stateDir: string
  report?: Reporter
  /** Injected for tests: how to get the inventory and how to connect. */
  inventory?: (hosts: InventoryHost[]) => Promise<Inventory>
  connect?: (entry: InventoryEntry) => Promise<RemoteHost>
}

export async function provision(opts: ProvisionOptions): Promise<HostRecap[]> {
  const { plan } = opts
  // A group's name (the hub pair's, the proxy pair's) stands for its members.
  const only = (opts.only ?? []).flatMap((n) => plan.vrrp.find((g) => g.name === n)?.members.map((m) => m.host) ?? [n])
  const unknown = only.filter((n) => !plan.hosts.some((h) => h.name === n))
  if (unknown.length)
    throw new Error(
      `unknown host ${unknown.join(', ')}: the topology has ${plan.hosts.map((h) => h.name).join(', ')}${plan.vrrp.length ? ` and the groups ${plan.vrrp.map((g) => g.name).join(', ')}` : ''}`,
    )
  const hosts = plan.hosts.filter((h) => !only.length || only.includes(h.name))
  const inventory = await (opts.inventory ?? ((names) => vagrantInventory(names, opts.repoRoot)))(hosts)
  const connect = opts.connect ?? ((e) => SshHost.connect(e))

  return Promise.all(
    hosts.map(async (self): Promise<HostRecap> => {
      const unreachable = (reason: string): HostRecap => ({
        host: self.name,
        roles: [],
        steps: [],
        handlers: [],
        unreachable: reason,
      })
      const entry = inventory.entries.get(self.name)
      if (!entry) return unreachable(inventory.missing.get(self.name) ?? 'not in the inventory')
      let host: RemoteHost
      try {
        host = await connect(entry)
      } catch (e) {
        return unreachable((e as Error).message)
      }
      try {
        const facts = await gatherFacts(host, self)
        const roles = rolesFor(self, plan)
        const recap = await runRoles(
          roles,
          { host, self, plan, facts, dryRun: !!opts.dryRun, stateDir: opts.stateDir },
          opts.report,
        )
        // A marker that only a complete, successful run leaves: tests (and people) can
        // tell a provisioned host from one whose run stopped halfway.
        if (!opts.dryRun)
          await host.exec(
            counts(recap).failed === 0 ? `test -f ${PROVISIONED} || touch ${PROVISIONED}` : `rm -f ${PROVISIONED}`,
          )
        return recap
      } catch (e) {
        return {
          host: self.name,
          roles: [],
          steps: [
            {
              name: 'Prepare or finish the run (facts, roles, provisioned marker)',
              status: 'failed',
              error: (e as Error).message,
              ms: 0,
            },
          ],
          handlers: [],
        }
      } finally {
        await host.close()
      }
    }),
  )
}
