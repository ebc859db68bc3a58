// The IPv4 arithmetic the topology's validation rests on, at its edges (StrykerJS found
// the anchors of both parsers and the prefix bound unheld).
import t from 'tap'
import { broadcast, contains, formatAddress, mask, parseAddress, parseCidr } from '../../provision/lib/ipv4.js'

t.test('an address is four octets, whole, each at most 255', async (t) => {
  t.equal(parseAddress('10.20.0.1'), 0x0a140001)
  t.equal(parseAddress('255.255.255.255'), 0xffffffff, 'the top address, unsigned')
  t.equal(formatAddress(0xc0a80a01), '192.168.10.1')
  for (const bad of [
    '10.20.0.256',
    ' 10.20.0.1',
    '10.20.0.1 ',
    'x10.20.0.1',
    '10.20.0.1x',
    '10.20.0',
    '10.20.0.1.5',
    '10.20.0.1/24',
    '1000.0.0.1',
    '',
  ]) {
    t.equal(parseAddress(bad), undefined, JSON.stringify(bad))
  }
})

t.test('a network is an address, a slash and a prefix of 0 to 32, with no host bits', async (t) => {
  t.same(parseCidr('10.20.0.0/24'), { network: 0x0a140000, prefix: 24, text: '10.20.0.0/24' })
  t.same(parseCidr('10.20.0.7/32'), { network: 0x0a140007, prefix: 32, text: '10.20.0.7/32' }, 'a /32')
  t.same(parseCidr('0.0.0.0/0'), { network: 0, prefix: 0, text: '0.0.0.0/0' }, 'everything')
  t.equal(parseCidr('0.0.0.0/33'), undefined, 'a prefix over 32, where no host bit could show it')
  for (const bad of [
    'a/10.20.0.0/24',
    '10.20.0.0/33',
    '10.20.0.0/24 ',
    ' 10.20.0.0/24',
    'x/24',
    '10.20.0.0/24x',
    '10.20.0.0',
    '10.20.0.0/',
    '10.20.0.0/240',
    '10.20.0.300/24',
    '10.20.0.1/24',
  ]) {
    t.equal(parseCidr(bad), undefined, JSON.stringify(bad))
  }
})

t.test('masks, broadcast and membership', async (t) => {
  t.equal(mask(0), 0)
  t.equal(mask(24), 0xffffff00)
  t.equal(mask(32), 0xffffffff)
  const lan = parseCidr('10.10.1.0/24')!
  t.equal(formatAddress(broadcast(lan)), '10.10.1.255')
  t.ok(contains(lan, parseAddress('10.10.1.254')!))
  t.notOk(contains(lan, parseAddress('10.10.2.1')!))
})
