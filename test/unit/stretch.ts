// The commands that stretch a lab network to other machines (scripts/lib/stretch.ts):
// what each machine runs, and the refusals that name what is wrong.
import t from 'tap'
import { stretchCommands, stretchedMtu, vxlanName } from '../../scripts/lib/stretch.js'

const end = {
  bridge: 'iotlab-cloud',
  vni: 10002,
  local: '198.18.254.1',
  dev: 'eno1',
  remotes: ['198.18.254.2', '198.18.254.3'],
}

t.test('one VXLAN device per network, one flood entry per other machine, the MTU less 50 bytes', async (t) => {
  t.same(stretchCommands(end), [
    [
      'ip',
      'link',
      'add',
      'iotlab-vx2712',
      'type',
      'vxlan',
      'id',
      '10002',
      'local',
      '198.18.254.1',
      'dev',
      'eno1',
      'dstport',
      '4789',
    ],
    ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'iotlab-vx2712', 'dst', '198.18.254.2'],
    ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'iotlab-vx2712', 'dst', '198.18.254.3'],
    ['ip', 'link', 'set', 'iotlab-vx2712', 'mtu', '1450'],
    ['ip', 'link', 'set', 'iotlab-cloud', 'mtu', '1450'],
    ['ip', 'link', 'set', 'iotlab-vx2712', 'master', 'iotlab-cloud'],
    ['ip', 'link', 'set', 'iotlab-vx2712', 'up'],
  ])
  t.equal(stretchedMtu(9000), 8950, 'a jumbo underlay')
  t.ok(vxlanName(16777215).length <= 15, "the largest VNI still fits Linux's 15-character names")
})

t.test('refused, with what is wrong', async (t) => {
  t.throws(
    () => stretchCommands({ ...end, vni: 0 }),
    /vni 0: a VXLAN network identifier is a whole number from 1 to 16777215/,
  )
  t.throws(() => stretchCommands({ ...end, vni: 2 ** 24 }), /vni 16777216/)
  t.throws(() => stretchCommands({ ...end, remotes: ['198.18.254.256'] }), /198\.18\.254\.256: not an IPv4 address/)
  t.throws(() => stretchCommands({ ...end, remotes: ['198.18.254.1'] }), /this machine's own address/)
  t.throws(() => stretchCommands({ ...end, remotes: [] }), /iotlab-cloud: no other machine to stretch it to/)
})
