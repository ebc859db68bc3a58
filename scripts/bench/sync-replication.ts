// What never losing an acknowledged reading costs: the database cluster's strict
// synchronous replication (a commit returns once a standby has it on disk) against
// asynchronous replication (a commit returns once the primary has it), on the full
// path, runs alternating. Patroni's settings live in etcd and change through its REST
// API (PATCH /config, behind the generated password), for all members at once; the
// provisioned settings (dcsSettings) are put back whatever happens.
import { stateDir } from '../../provision/paths.js'
import { serviceName } from '../../provision/plan.js'
import { dcsSettings, patroniPatch } from '../../provision/roles/db.js'
import { waitFor } from '../../provision/lib/wait.js'
import { alternating, type LoadOptions, type ScenarioSpec, type Tuning } from './ingest.js'
import type { BenchLab } from './lab.js'

type Mode = 'off' | 'on'

/** Patroni's replication settings for each mode: off is asynchronous (no standby waited for). */
export function replicationSettings(mode: Mode): Record<string, unknown> {
  const provisioned = dcsSettings()
  return mode === 'on'
    ? {
        synchronous_mode: provisioned.synchronous_mode,
        synchronous_mode_strict: provisioned.synchronous_mode_strict,
      }
    : { synchronous_mode: false, synchronous_mode_strict: false }
}

async function setReplication(lab: BenchLab, mode: Mode | 'provisioned') {
  const cluster = lab.plan.services.db!
  const [member] = cluster.members
  const body = mode === 'provisioned' ? dcsSettings() : replicationSettings(mode)
  await lab.must(
    member.host,
    `curl -fsS --max-time 10 -K - http://${member.address}:${cluster.cluster!.patroniPort}/config >/dev/null`,
    { stdin: patroniPatch(stateDir, body) },
  )
  // Applied when the primary names a synchronous standby, or names none.
  const sync = mode !== 'off'
  const primary = serviceName(lab.plan, 'db')!
  await waitFor(
    `the primary to ${sync ? 'wait for a synchronous standby' : 'wait for no standby'}`,
    async () => {
      const names = (
        await lab.must(primary, `runuser -u postgres -- psql -X -At -c 'SHOW synchronous_standby_names'`)
      ).trim()
      return sync ? names !== '' : names === ''
    },
    30_000,
    250,
  )
}

export async function syncReplicationAB(
  lab: BenchLab,
  spec: ScenarioSpec,
  o: LoadOptions,
  log: (m: string) => void,
): Promise<Tuning> {
  log(
    `The database's replication, side by side: asynchronous and strict synchronous (as provisioned), ${o.runs} alternating runs each`,
  )
  const scenario = await alternating(lab, spec, o, log, {
    set: (mode) => setReplication(lab, mode),
    restore: () => setReplication(lab, 'provisioned'),
    tag: (mode) => (mode === 'on' ? 'synchronous' : 'asynchronous'),
  })
  return {
    name: "the database cluster's synchronous replication",
    off: 'asynchronous: a commit returns once the primary has it (a failover may lose what a standby did not receive)',
    on: 'strict synchronous to one standby: a commit returns once a standby has it on disk (as provisioned)',
    scenarios: [scenario],
  }
}
