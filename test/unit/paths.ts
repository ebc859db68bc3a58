import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { forgetTopology, recordTopology, topologyIn } from '../../provision/paths.js'

t.test('the running lab keeps the topology it was brought up with, until lab:down', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paths-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const record = path.join(dir, 'state', 'topology-in-use')
  const fallback = path.join(dir, 'topology.yaml')
  const single = path.join(dir, 'topology.single.yaml')
  fs.writeFileSync(fallback, '')
  fs.writeFileSync(single, '')

  t.equal(topologyIn({}, record, fallback), fallback, 'no lab made yet: topology.yaml')
  recordTopology(single, record, fallback)
  t.equal(topologyIn({}, record, fallback), single, 'brought up with the single one: later commands read it')
  t.equal(topologyIn({ LAB_TOPOLOGY: fallback }, record, fallback), fallback, 'LAB_TOPOLOGY still wins')
  recordTopology(fallback, record, fallback)
  t.notOk(fs.existsSync(record), 'brought up again with the default: nothing recorded')
  recordTopology(single, record, fallback)
  forgetTopology(record)
  t.equal(topologyIn({}, record, fallback), fallback, 'after lab:down: topology.yaml again')

  recordTopology(single, record, fallback)
  fs.rmSync(single)
  t.throws(
    () => topologyIn({}, record, fallback),
    /brought up with .*topology\.single\.yaml, which is gone: put it back, or name another with LAB_TOPOLOGY/,
    'a recorded file that is gone is named, not silently replaced by another topology',
  )
})
