import t from 'tap'
import { parseRawSas } from '../../services/lib/swanctl.js'

// Verbatim `swanctl --list-sas --raw` from gw-cloud in this lab.
const raw = `list-sa event {gw-iot {uniqueid=1 version=2 state=ESTABLISHED local-host=198.51.100.12 local-port=4500 local-id=gw-cloud.iotlab remote-host=198.51.100.11 remote-port=4500 remote-id=gw-iot.iotlab initiator-spi=1cd320160abf5eab responder-spi=ebb94471df08f5de nat-remote=yes nat-any=yes encr-alg=CHACHA20_POLY1305 prf-alg=PRF_HMAC_SHA2_512 dh-group=CURVE_25519 established=51 rekey-time=13973 child-sas {gw-iot-1 {name=gw-iot uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=1f6b0c91 spi-out=06446b69 encr-alg=CHACHA20_POLY1305 bytes-in=420 packets-in=5 use-in=35 bytes-out=420 packets-out=5 use-out=35 rekey-time=3528 life-time=3909 install-time=51 local-ts=[10.20.0.0/24] remote-ts=[10.10.1.0/24]}}}}
list-sas reply {}`

t.test('an IKE SA with its child, fields by name', async (t) => {
  const [sa, ...rest] = parseRawSas(raw)
  t.same(rest, [], 'one SA')
  t.equal(sa.name, 'gw-iot')
  t.equal(sa.state, 'ESTABLISHED')
  t.match(sa.fields, {
    'encr-alg': 'CHACHA20_POLY1305',
    'prf-alg': 'PRF_HMAC_SHA2_512',
    'dh-group': 'CURVE_25519',
    'remote-id': 'gw-iot.iotlab',
  })
  t.notOk(sa.fields['spi-in'], 'child fields do not leak into the IKE SA')
  t.equal(sa.children.length, 1)
  t.match(sa.children[0], { name: 'gw-iot', state: 'INSTALLED' })
  t.match(sa.children[0].fields, {
    'spi-in': '1f6b0c91',
    encap: 'yes',
    'local-ts': '[10.20.0.0/24]',
    'remote-ts': '[10.10.1.0/24]',
  })
})

t.test('no SA, and an IKE SA still connecting with no child', async (t) => {
  t.same(parseRawSas('list-sas reply {}'), [])
  const [sa] = parseRawSas('list-sa event {gw-iot {uniqueid=3 version=2 state=CONNECTING local-host=198.51.100.11}}')
  t.equal(sa.state, 'CONNECTING')
  t.same(sa.children, [])
})

t.test('a child SA with several traffic selectors keeps the whole list', async (t) => {
  // The site's child SA carries the LAN and the old server's /32: swanctl prints them
  // space-separated inside one pair of brackets.
  const [sa] = parseRawSas(
    'list-sa event {gw-iot {uniqueid=4 state=ESTABLISHED child-sas {gw-iot-4 {name=gw-iot state=INSTALLED local-ts=[10.10.1.0/24 10.10.1.100/32] remote-ts=[10.20.0.0/24] bytes-in=0}}}}',
  )
  t.equal(sa.children[0].fields['local-ts'], '[10.10.1.0/24 10.10.1.100/32]')
  t.equal(sa.children[0].fields['bytes-in'], '0', 'and the fields after it')
})
