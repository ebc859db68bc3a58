// Which provider makes each host: asked for, or what can really run here; and the
// running lab's providers come from Vagrant's state, never from what is installed.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { loadPlan } from '../../provision/plan.js'
import { mgmtMac, mgmtNetworkXml, prefixToMask } from '../../scripts/lib/libvirt.js'
import { chooseProviders, vmAccel, type Machine } from '../../provision/providers.js'
import { topologyFile } from '../../provision/paths.js'
import { providerSummary, runningProviders } from '../../scripts/lib/providers.js'

const plan = loadPlan(topologyFile)
const noVirt: Machine = { hardwareVirt: false, hasLibvirt: true, hasVirtualbox: false }
const kvm: Machine = { hardwareVirt: true, hasLibvirt: true, hasVirtualbox: false }
const only = (p: Record<string, string>) => [...new Set(Object.values(p))]
let hasVagrant = true
try {
  execFileSync('vagrant', ['--version'], { stdio: 'ignore' })
} catch {
  hasVagrant = false
}

t.test('unasked: lxc where VMs would be emulated, even with libvirt installed', async (t) => {
  const choice = chooseProviders(plan.hosts, {}, noVirt)
  t.same(only(choice.providers), ['lxc'])
  t.match(choice.reason, /no hardware virtualization/)
  const planned = loadPlan(topologyFile, { env: {}, machine: noVirt })
  t.same(
    planned.hosts.map((h) => h.provider),
    plan.hosts.map(() => 'lxc'),
    "the plan holds each host's provider",
  )
  t.match(planned.providerReason, /no hardware virtualization/)
  t.same(
    loadPlan(topologyFile, { env: { LAB_VM_ROLES: 'gateway' }, machine: noVirt }).hosts.map((h) => h.provider),
    plan.hosts.map((h) => (h.role === 'gateway' ? 'libvirt' : 'lxc')),
  )
  t.same(only(chooseProviders(plan.hosts, {}, kvm).providers), ['libvirt'], 'libvirt where KVM really runs VMs')
  t.same(only(chooseProviders(plan.hosts, {}, { ...kvm, hasVirtualbox: true }).providers), ['virtualbox'])
  t.same(
    only(chooseProviders(plan.hosts, {}, { ...kvm, hasLibvirt: false }).providers),
    ['lxc'],
    'lxc when no VM provider is installed',
  )
})

t.test('asked: LAB_PROVIDER for every host, LAB_VM_ROLES for VMs beside containers', async (t) => {
  t.same(only(chooseProviders(plan.hosts, { LAB_PROVIDER: 'libvirt' }, noVirt).providers), ['libvirt'])
  t.same(only(chooseProviders(plan.hosts, { VAGRANT_DEFAULT_PROVIDER: 'lxc' }, kvm).providers), ['lxc'])
  const mixed = chooseProviders(plan.hosts, { LAB_VM_ROLES: 'gateway' }, noVirt)
  for (const h of plan.hosts) t.equal(mixed.providers[h.name], h.role === 'gateway' ? 'libvirt' : 'lxc', h.name)
  t.match(mixed.reason, /LAB_VM_ROLES=gateway as libvirt VMs/)
})

t.test('a wrong request is refused with the variable and the choices named', async (t) => {
  t.throws(
    () => chooseProviders(plan.hosts, { LAB_PROVIDER: 'docker' }, noVirt),
    /LAB_PROVIDER=docker is not a provider this lab knows: use lxc, libvirt, virtualbox/,
  )
  t.throws(
    () => chooseProviders(plan.hosts, { LAB_VM_ROLES: 'gateway,router' }, noVirt),
    /LAB_VM_ROLES names router, which is not a role: use iot-client, gateway/,
  )
  t.throws(
    () => chooseProviders(plan.hosts, { LAB_VM_ROLES: 'gateway', VAGRANT_DEFAULT_PROVIDER: 'lxc' }, noVirt),
    /unset VAGRANT_DEFAULT_PROVIDER/,
  )
})

t.test("the running lab's providers are read from Vagrant's state", async (t) => {
  const dir = t.testdir({
    '.vagrant': { machines: { 'gw-iot': { libvirt: { id: 'x' } }, proxy: { lxc: { id: 'y' } }, gone: { lxc: {} } } },
  })
  const found = runningProviders(dir)
  t.same(
    [...found].sort(),
    [
      ['gw-iot', 'libvirt'],
      ['proxy', 'lxc'],
    ],
    'a machine folder without an id is not a machine',
  )
  t.equal(providerSummary(found.values()), 'mixed')
  t.equal(providerSummary(['lxc', 'lxc']), 'lxc')
  t.equal(providerSummary([]), 'none')
  t.same([...runningProviders(path.join(dir, 'nowhere'))], [])
})

t.test('KVM only where the processor has it; /dev/kvm alone is not enough', async (t) => {
  const withVmx = 'processor\t: 0\nflags\t\t: fpu vme vmx sse2\n'
  const without = 'processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n'
  t.match(vmAccel({}, withVmx, true), { accel: 'kvm', cpu: 'host' })
  t.match(vmAccel({}, without, true), { accel: 'tcg', cpu: 'qemu64', why: /no vmx\/svm/ })
  t.match(vmAccel({}, withVmx, false), { accel: 'tcg', why: /no \/dev\/kvm/ })
  t.match(vmAccel({ LAB_VM_ACCEL: 'tcg' }, withVmx, true), { accel: 'tcg', why: /LAB_VM_ACCEL=tcg/ })
  t.throws(() => vmAccel({ LAB_VM_ACCEL: 'hvf' }, withVmx, true), /LAB_VM_ACCEL=hvf is not known: use kvm or tcg/)
})

t.test("the management network: isolated, no forwarding, DHCP only for the lab's hosts", async (t) => {
  const xml = mgmtNetworkXml(
    plan,
    plan.hosts.map((h) => h.name),
  )
  t.notMatch(xml, /<forward/, 'no <forward>: libvirt routes and NATs nothing out of it')
  t.match(xml, /<port isolated='yes'\/>/, 'ports isolated: it joins no two hosts')
  t.match(xml, /<ip address='172\.31\.250\.1' netmask='255\.255\.255\.0'>/)
  t.notMatch(xml, /<range/, 'no dynamic range: an unknown MAC gets no address')
  for (const h of plan.hosts)
    t.match(xml, `<host mac='${mgmtMac(plan, h.name)}' name='${h.name}' ip='${h.mgmt.address}'/>`)
  const macs = plan.hosts.map((h) => mgmtMac(plan, h.name))
  t.equal(new Set(macs).size, macs.length, 'one MAC per host')
  t.equal(prefixToMask(24), '255.255.255.0')
  t.equal(prefixToMask(25), '255.255.255.128')
  t.equal(prefixToMask(16), '255.255.0.0')
  t.equal(prefixToMask(32), '255.255.255.255')
  t.equal(prefixToMask(0), '0.0.0.0')
})

t.test("the VM box is made from the lxc box's package list plus a kernel and a bootloader", async (t) => {
  const vm = fs.readFileSync(path.join(path.dirname(topologyFile), 'box', 'vm', 'packages.txt'), 'utf8')
  t.match(vm, /^linux-image-amd64$/m)
  t.match(vm, /^grub-pc$/m)
})

t.test('preparing for containers or VMs as another user stops at once, saying what to do', async (t) => {
  const { prepare } = await import('../../scripts/lib/lab.js')
  const getuid = process.getuid
  t.teardown(() => {
    process.getuid = getuid
  })
  process.getuid = () => 1000
  const said: string[] = []
  await t.rejects(
    prepare(['lxc'], (m) => said.push(m)),
    /the lxc provider needs root here \(containers, VMs, bridges\): run it again as root, e\.g\. `sudo npm run lab` or `sudo vagrant up`/,
  )
  await t.rejects(
    prepare(['libvirt', 'lxc'], (m) => said.push(m)),
    /the libvirt and lxc providers need root/,
  )
  t.same(said, [], 'nothing was started before the refusal')
  if (hasVagrant) {
    const box = process.env.LAB_VM_BOX
    t.teardown(() => {
      if (box === undefined) delete process.env.LAB_VM_BOX
      else process.env.LAB_VM_BOX = box
    })
    process.env.LAB_VM_BOX = 'iotlab-test/no-such-box'
    await t.rejects(
      prepare(['virtualbox'], (m) => said.push(m)),
      /the virtualbox provider needs the box iotlab-test\/no-such-box, which is not on this machine and is not built by the lab/,
      'no download is attempted for a box the lab does not build',
    )
  }
})

// Vagrant's message when its wait for SSH saw a state it did not expect, as CI printed
// it on 3 Dec 2026 (the state's line was cut off then: the error now keeps Vagrant's
// stderr whole).
const badState = (state: string) =>
  [
    'An error occurred while executing multiple actions in parallel.',
    "An error occurred while executing the action on the 'gw-cloud-2'",
    'machine. Please handle this error then try again:',
    '',
    'The guest machine entered an invalid state while waiting for it',
    "to boot. Valid states are 'running'. The machine is in the",
    `'${state}' state. Please verify everything is configured`,
    'properly and try again.',
    '',
    "If the provider you're using has a GUI that comes with it,",
  ].join('\n')

t.test(
  'a VM booting whose DHCP lease vagrant-libvirt missed is brought up once more; a VM that died is not',
  async (t) => {
    const { leaseMissedAtBoot } = await import('../../scripts/lib/provider-libvirt.js')
    t.ok(leaseMissedAtBoot(badState('inaccessible')), "'inaccessible': running, lease not seen")
    t.notOk(leaseMissedAtBoot(badState('shutoff')), "'shutoff': QEMU is gone, a second try would hide it")
    t.notOk(leaseMissedAtBoot(badState('paused')), "'paused': libvirt paused it (a full disk), not a race")
    t.notOk(leaseMissedAtBoot('Timed out while waiting for the machine to boot.'), 'a boot timeout is not retried')
  },
)

t.test("a failed vagrant command's error carries Vagrant's own message, not only its last lines", async (t) => {
  const { vagrantErrorText } = await import('../../scripts/lib/lab.js')
  const said = vagrantErrorText(badState('inaccessible'), '==> gw-iot: Waiting for SSH to become available...\n')
  t.match(said, /The machine is in the\n'inaccessible' state/, 'the state Vagrant saw is in the error')
  t.match(said, /on the 'gw-cloud-2'/, 'and the machine it saw it on')
  const out = Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n')
  t.equal(
    vagrantErrorText('', out),
    Array.from({ length: 8 }, (_, i) => `line ${i + 12}`).join('\n'),
    'no stderr: the last 8 lines',
  )
})

t.test(
  'a pair member is given 15 s to say whether it holds the address where it is an emulated VM, 3 s elsewhere',
  async (t) => {
    const { answerBoundMs, holdersOf } = await import('../../scripts/lib/vrrp-holders.js')
    const lab = new Map<string, 'lxc' | 'libvirt'>([
      ['gw-cloud', 'libvirt'],
      ['gw-cloud-2', 'libvirt'],
      ['proxy-1', 'lxc'],
      ['proxy-2', 'lxc'],
    ])
    t.equal(answerBoundMs(['gw-cloud', 'gw-cloud-2'], lab, 'tcg'), 15_000, 'VMs under emulation')
    t.equal(answerBoundMs(['gw-cloud', 'gw-cloud-2'], lab, 'kvm'), 3000, 'VMs with KVM answer at once')
    t.equal(answerBoundMs(['proxy-1', 'proxy-2'], lab, 'tcg'), 3000, 'containers')
    t.equal(answerBoundMs(['proxy-1', 'gw-cloud'], lab, 'tcg'), 15_000, 'a pair with one emulated member')
    // The bound holds: a member that never answers is not a holder, and is given up.
    const group = {
      name: 'hub',
      members: [{ host: 'a' }, { host: 'b' }],
      addresses: [{ address: '10.20.0.1' }],
    } as unknown as Parameters<typeof holdersOf>[1]
    const t0 = Date.now()
    const held = await holdersOf(
      (h) => (h === 'a' ? Promise.resolve({ stdout: '3: cloud inet 10.20.0.1/32' }) : new Promise(() => {})),
      group,
      200,
    )
    t.same(held, ['a'], 'the member that answered and holds it')
    t.ok(Date.now() - t0 < 2000, 'the silent one given up after the bound')
  },
)
