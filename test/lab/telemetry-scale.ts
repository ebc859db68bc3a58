// Scaling the back ends is a change of data: a copy of the topology with a third
// backend, `vagrant up` of the new host and `npm run provision`, and nginx balances
// over three without a reading dropped; removing it again (provision first, so nginx
// stops sending to it, then destroy) drops none either. The IoT client streams
// throughout, and every reading it took is checked stored exactly once.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { parse, stringify } from 'yaml'
import { loadPlan } from '../../provision/plan.js'
import { repoRoot, topologyFile } from '../../provision/paths.js'
import { labCli, openLab, waitFor } from '../lib/lab.js'
import { acknowledgedAfter, assertExactlyOnce, clientStatus, dbNow, markStream, sql } from '../lib/telemetry.js'

const run = promisify(execFile)
// The third backend is added as an lxc container beside the lab (an all-VM lab would
// take minutes for it): this file is selected where the lab has containers.
const opened = await openLab(t, { requires: { containers: true } })
if (opened) {
  const lab = opened
  const raw = parse(fs.readFileSync(topologyFile, 'utf8'))
  const name = 'backend-9'
  raw.hosts[name] = { role: 'backend', interfaces: { mgmt: '172.31.250.29', cloud: '10.20.0.29' } }
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'three-backends-')), 'topology.yaml')
  fs.writeFileSync(file, stringify(raw))
  const bigger = loadPlan(file)
  const env = { ...process.env, LAB_TOPOLOGY: file }
  const destroy = () => run('vagrant', ['destroy', '-f', name], { cwd: repoRoot, env }).catch(() => {})

  // Registered before anything changes: whatever fails below, the lab is put back.
  t.teardown(async () => {
    await labCli('provision/cli.ts')
    await destroy()
  })
  let mark: Awaited<ReturnType<typeof markStream>>

  t.test('a backend added as data takes readings after one provision, none dropped', async (t) => {
    mark = await markStream(lab)
    // Rows of an earlier run's backend-9 are history: count only what arrives from now.
    const since = await dbNow(lab)
    await run('vagrant', ['up', '--provider=lxc', name], { cwd: repoRoot, env, maxBuffer: 64 << 20 })
    const p = await labCli('provision/cli.ts', ['--json'], { LAB_TOPOLOGY: file })
    const { summary, hosts } = JSON.parse(p.stdout)
    t.same([summary.failed, summary.unreachable], [0, 0], 'every host is provisioned')
    const proxyRecap = hosts.find((h: { host: string }) => h.host === lab.byRole('proxy')[0].name)
    t.match(JSON.stringify(proxyRecap.handlers), /reload nginx/, 'nginx was reloaded (gracefully), not restarted')
    const conf = (
      await lab.sh(lab.byRole('proxy')[0].name, 'grep -c "server 10.20.0.*:8080" /etc/nginx/nginx.conf')
    ).stdout.trim()
    t.equal(Number(conf), bigger.services.backends.length, `nginx has ${bigger.services.backends.length} upstreams`)
    const stored = async () =>
      Number(
        (await sql(lab, `SELECT count(*) FROM readings WHERE backend = '${name}' AND received_at > '${since}';`))[0][0],
      )
    const n = await waitFor(`${name} storing readings`, async () => (await stored()) || undefined, 30_000, 500).catch(
      () => 0,
    )
    t.ok(n > 0, `${name} stored readings since it was added (${n})`)
    await assertExactlyOnce(t, lab, 'a third backend added', mark)
  })

  t.test('removed again: provision first (nginx lets go of it), then destroy; none dropped', async (t) => {
    await labCli('provision/cli.ts')
    const conf = (
      await lab.sh(lab.byRole('proxy')[0].name, 'grep -c "server 10.20.0.*:8080" /etc/nginx/nginx.conf')
    ).stdout.trim()
    t.equal(Number(conf), lab.plan.services.backends.length, "nginx is back to the topology's backends")
    const sent = (await clientStatus(lab)).sent
    await destroy()
    await acknowledgedAfter(lab, 'the third backend gone', sent)
    await assertExactlyOnce(t, lab, 'the third backend added, then removed', mark)
  })
}
