// The Vagrantfile reads the topology through the one validator: it validates as is,
// and a wrong topology stops Vagrant with the same message naming the field.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { parse, stringify } from 'yaml'
import { repoRoot, topologyFile } from '../../provision/paths.js'

const run = promisify(execFile)
let why: string | false = false
try {
  await run('vagrant', ['--version'])
} catch {
  why = 'vagrant is not installed: `npm test` installs it as root'
}

t.test('vagrant validate accepts the Vagrantfile and the topology', { skip: why }, async (t) => {
  const r = await run('vagrant', ['validate', '-p'], { cwd: repoRoot })
  t.match(r.stdout, /Vagrantfile validated successfully/)
})

t.test('a wrong topology stops Vagrant with the field named', { skip: why }, async (t) => {
  const raw = parse(fs.readFileSync(topologyFile, 'utf8'))
  raw.hosts['proxy-1'].interfaces.cloud = raw.hosts['gw-cloud'].interfaces.cloud
  const dir = t.testdir({})
  const bad = path.join(dir, 'topology.yaml')
  fs.writeFileSync(bad, stringify(raw))
  const r = await run('vagrant', ['validate', '-p'], {
    cwd: repoRoot,
    env: { ...process.env, LAB_TOPOLOGY: bad },
  }).then(
    () => undefined,
    (e) => e as { stderr: string; code: number },
  )
  t.ok(r, 'vagrant refused to go on')
  t.match(
    r?.stderr ?? '',
    `hosts.proxy-1.interfaces.cloud: duplicate address ${raw.hosts['gw-cloud'].interfaces.cloud}: already used by hosts.gw-cloud.interfaces.cloud`,
  )
})
