import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { parseSshConfig, stateEntry } from '../../provision/inventory.js'

// Verbatim shape of `vagrant ssh-config` from the lxc provider, and from VirtualBox.
const lxc = `Host iot-client
  HostName 172.31.250.10
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /work/main/.vagrant/machines/iot-client/lxc/private_key
  IdentitiesOnly yes
  LogLevel FATAL

Host gw-iot
  HostName 172.31.250.11
  User vagrant
  Port 22
  IdentityFile /work/main/.vagrant/machines/gw-iot/lxc/private_key
  IdentitiesOnly yes
`
const virtualbox = `Host proxy
  HostName 127.0.0.1
  User vagrant
  Port 2201
  IdentityFile "/home/me/my lab/.vagrant/machines/proxy/virtualbox/private_key"
  IdentityFile /home/me/.vagrant.d/insecure_private_key
`

t.test('lxc: every host with its management address and its own key', async (t) => {
  const inv = parseSshConfig(lxc)
  t.same([...inv.keys()], ['iot-client', 'gw-iot'])
  t.same(inv.get('gw-iot'), {
    name: 'gw-iot',
    hostName: '172.31.250.11',
    port: 22,
    user: 'vagrant',
    identityFile: '/work/main/.vagrant/machines/gw-iot/lxc/private_key',
  })
})

t.test('virtualbox: forwarded port, quoted path with a space, first key wins', async (t) => {
  const e = parseSshConfig(virtualbox).get('proxy')!
  t.equal(e.hostName, '127.0.0.1')
  t.equal(e.port, 2201)
  t.equal(e.identityFile, '/home/me/my lab/.vagrant/machines/proxy/virtualbox/private_key')
})

t.test('no output (no machine running) is an empty inventory', async (t) => {
  t.equal(parseSshConfig('').size, 0)
})

t.test('an entry without an address is an error naming the host', async (t) => {
  t.throws(() => parseSshConfig('Host db\n  User vagrant\n  IdentityFile /k\n'), /host db has no hostName/)
})

t.test(
  "an lxc or libvirt machine's SSH entry is read from Vagrant's state; anything else is asked of Vagrant",
  async (t) => {
    const cwd = t.testdir({
      '.vagrant': {
        machines: {
          proxy: { lxc: { id: 'iotlab-proxy', private_key: 'k' } },
          'gw-iot': { libvirt: { id: '6f1c', private_key: 'k' }, lxc: {} },
          vbox: { virtualbox: { id: 'x', private_key: 'k' } },
          fresh: { lxc: { id: 'iotlab-fresh' } },
          gone: { lxc: { private_key: 'k' } },
        },
      },
    })
    const key = (h: string, p: string) => path.join(cwd, '.vagrant', 'machines', h, p, 'private_key')
    t.same(stateEntry({ name: 'proxy', mgmt: { address: '172.31.250.20' } }, cwd), {
      name: 'proxy',
      hostName: '172.31.250.20',
      port: 22,
      user: 'vagrant',
      identityFile: key('proxy', 'lxc'),
    })
    t.equal(
      stateEntry({ name: 'gw-iot', mgmt: { address: '172.31.250.11' } }, cwd)?.identityFile,
      key('gw-iot', 'libvirt'),
      'the provider that has the id, not an empty one',
    )
    t.equal(
      stateEntry({ name: 'vbox', mgmt: { address: '172.31.250.50' } }, cwd),
      undefined,
      'VirtualBox forwards a port: Vagrant is asked',
    )
    t.equal(
      stateEntry({ name: 'fresh', mgmt: { address: '172.31.250.51' } }, cwd),
      undefined,
      'no key of its own yet: Vagrant is asked',
    )
    t.equal(
      stateEntry({ name: 'gone', mgmt: { address: '172.31.250.52' } }, cwd),
      undefined,
      'destroyed (no id): Vagrant is asked',
    )
    t.equal(stateEntry({ name: 'proxy' }, cwd), undefined, 'no management address known: Vagrant is asked')
    t.ok(fs.existsSync(key('proxy', 'lxc')))
  },
)
