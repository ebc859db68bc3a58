// What the client's durability costs: the outbox's fsyncs, on the IoT client's own
// disk, by how many readings share one append (the client puts all its devices'
// readings of one interval in one append).
import { bundle } from '../../services/build.js'
import { hostsWithRole } from '../../provision/plan.js'
import type { BenchLab } from './lab.js'
import { figure, type Figure } from './stats.js'

export interface OutboxFigures {
  batch: number
  readings_per_s: Figure
  ms_per_append: Figure
}

export async function outboxBench(
  lab: BenchLab,
  runs: number,
  seconds: number,
  log: (m: string) => void,
): Promise<OutboxFigures[]> {
  const [client] = hostsWithRole(lab.plan, 'iot-client')
  const code = await lab.put(client.name, 'lab-outbox-bench.cjs', await bundle('outbox-bench'))
  // On the disk the outbox uses (not /run, a tmpfs where fsync costs nothing).
  const dir = '/var/lib/lab-bench-outbox'
  const batches = [1, 16, 256]
  const all: { batch: number; readings_per_s: number; ms_per_append: number }[][] = []
  log(`Client outbox: durable appends, batches of ${batches.join(', ')} readings, ${runs} × ${seconds} s each`)
  try {
    for (let i = 0; i < runs; i++) {
      const r = JSON.parse(
        await lab.must(client.name, `node ${code} --dir ${dir} --seconds ${seconds} --batches ${batches.join(',')}`),
      ) as (typeof all)[number]
      all.push(r)
      log(
        `  run ${i + 1}/${runs}: ${r.map((x) => `batch ${x.batch}: ${x.readings_per_s} readings/s (${x.ms_per_append} ms per append)`).join('; ')}`,
      )
    }
  } finally {
    await lab.sh(client.name, `rm -rf ${dir}`)
  }
  return batches.map((batch, i) => ({
    batch,
    readings_per_s: figure(all.map((r) => r[i].readings_per_s)),
    ms_per_append: figure(all.map((r) => r[i].ms_per_append)),
  }))
}
