// The libvirt (VM) box: the lxc box's packages (box/packages.txt, box/customize.sh)
// plus a kernel and a bootloader (box/vm/), as a qcow2 disk. Made without loop mounts
// or a running VM manager: mmdebstrap builds the root, `mkfs.ext4 -d` turns it into a
// filesystem inside a partitioned raw file, and one sealing boot under QEMU (the kernel
// given directly, box/vm/seal.sh as init) installs GRUB from inside the guest. Named by
// a hash of every input and cached like the lxc box: built once, then reused.
import { createHash, randomUUID } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { boxPackages } from '../../provision/box-packages.js'
import { debianSources, installedBoxes, SUITE, vagrantInsecureKey } from './box.js'
import { vmAccel } from '../../provision/providers.js'
import { boxDir, cacheDir } from '../../provision/paths.js'

const VM_DIR = path.join(boxDir, 'vm')
/** Virtual size of the box's disk; qcow2 holds only what is written (about 1.3 GB). */
const DISK_GIB = 8
const PART_START_SECTOR = 2048

/** Raise when this file changes the image it makes (disk layout, sealing): a new box. */
const BUILDER_VERSION = 1

const INPUTS = [
  path.join(boxDir, 'packages.txt'),
  path.join(boxDir, 'customize.sh'),
  path.join(VM_DIR, 'packages.txt'),
  path.join(VM_DIR, 'customize.sh'),
  path.join(VM_DIR, 'seal.sh'),
]

/** VM box name from its inputs: change any of them and it is a new box. */
export function vmBoxName(): string {
  const hash = createHash('sha256')
  hash.update(`builder ${BUILDER_VERSION}`)
  for (const file of INPUTS) hash.update(path.basename(file)).update(fs.readFileSync(file))
  return `iotlab-vm-debian12-${hash.digest('hex').slice(0, 12)}`
}

export const vmBoxFile = (name = vmBoxName()) => path.join(cacheDir, `${name}.box`)

export interface VmBoxResult {
  name: string
  built: boolean
  seconds: number
}

/** Ensure Vagrant knows the VM box, building it when no cached file exists. */
export async function ensureVmBox(log: (m: string) => void = console.log): Promise<VmBoxResult> {
  const name = vmBoxName()
  const t0 = Date.now()
  if ((await installedBoxes('libvirt')).includes(name)) return { name, built: false, seconds: 0 }
  const file = vmBoxFile(name)
  let built = false
  if (!fs.existsSync(file)) {
    await buildVmBox(name, file, log)
    built = true
  }
  log(`Adding box ${name} (libvirt) to Vagrant`)
  await $({ quiet: true })`vagrant box add --force --provider libvirt --name ${name} ${file}`
  return { name, built, seconds: (Date.now() - t0) / 1000 }
}

async function buildVmBox(name: string, file: string, log: (m: string) => void): Promise<void> {
  fs.mkdirSync(cacheDir, { recursive: true })
  const work = path.join(cacheDir, `build-${name}`)
  const root = path.join(work, 'rootfs')
  await fs.promises.rm(work, { recursive: true, force: true })
  fs.mkdirSync(root, { recursive: true })
  const uuid = randomUUID()
  const packages = [...boxPackages(), ...boxPackages(fs.readFileSync(path.join(VM_DIR, 'packages.txt'), 'utf8'))]
  let t = Date.now()
  const took = () => {
    const s = ((Date.now() - t) / 1000).toFixed(0)
    t = Date.now()
    return `${s} s`
  }
  log(`Building VM box ${name}: mmdebstrap ${SUITE} with ${packages.length} packages and a kernel (a few minutes)`)
  const hooks = [
    `--customize-hook=${path.join(boxDir, 'customize.sh')} "$1" ${vagrantInsecureKey()}`,
    `--customize-hook=${path.join(VM_DIR, 'customize.sh')} "$1" ${uuid}`,
  ]
  await $({
    quiet: true,
  })`mmdebstrap --quiet --variant=apt --include=${packages.join(',')} ${hooks} ${SUITE} ${root} ${debianSources()}`
  log(`    root built (${took()})`)

  const boot = fs.readdirSync(path.join(root, 'boot'))
  const kernel = boot.find((f) => f.startsWith('vmlinuz-'))
  const initrd = boot.find((f) => f.startsWith('initrd.img-'))
  if (!kernel || !initrd) throw new Error(`the VM root has no kernel or initrd in /boot (found: ${boot.join(', ')})`)
  fs.copyFileSync(path.join(root, 'boot', kernel), path.join(work, 'vmlinuz'))
  fs.copyFileSync(path.join(root, 'boot', initrd), path.join(work, 'initrd'))

  // One partition from sector 2048 (GRUB's core goes in the gap before it), the
  // filesystem written straight into it at that offset: no loop device anywhere.
  const raw = path.join(work, 'disk.raw')
  await $({ quiet: true })`truncate -s ${DISK_GIB}G ${raw}`
  await $({ quiet: true, input: `label: dos\nstart=${PART_START_SECTOR}, type=83, bootable\n` })`sfdisk --quiet ${raw}`
  const fsKiB = DISK_GIB * 1024 * 1024 - (PART_START_SECTOR * 512) / 1024
  await $({
    quiet: true,
  })`mkfs.ext4 -q -F -L root -U ${uuid} -E offset=${PART_START_SECTOR * 512} -d ${root} ${raw} ${fsKiB}k`
  await fs.promises.rm(root, { recursive: true, force: true })
  log(`    disk image made (${took()})`)

  const accel = vmAccel()
  log(
    `Sealing boot under QEMU (${accel.accel}${accel.why ? `: ${accel.why}` : ''}): GRUB installed from inside the guest`,
  )
  const console = path.join(work, 'seal-console.log')
  const r = await $({
    quiet: true,
    nothrow: true,
    timeout: '15m',
  })`qemu-system-x86_64 -accel ${accel.accel} -cpu ${accel.cpu} -m 1024 -smp 1 -nographic -no-reboot -net none -serial file:${console} -monitor none -drive file=${raw},format=raw,if=virtio -kernel ${path.join(work, 'vmlinuz')} -initrd ${path.join(work, 'initrd')} -append ${'root=/dev/vda1 rw console=ttyS0 panic=-1 init=/usr/local/sbin/iotlab-seal'}`
  const said = fs.existsSync(console) ? fs.readFileSync(console, 'utf8') : ''
  if (!said.includes('iotlab-seal: SEALED')) {
    throw new Error(
      `the sealing boot of the VM box failed (QEMU exit ${r.exitCode}); its console is in ${console}:\n${said.split('\n').slice(-15).join('\n')}`,
    )
  }
  log(`    sealed (${took()})`)

  await $({ quiet: true })`qemu-img convert -O qcow2 ${raw} ${path.join(work, 'box.img')}`
  fs.rmSync(raw)
  fs.writeFileSync(
    path.join(work, 'metadata.json'),
    JSON.stringify({ provider: 'libvirt', format: 'qcow2', virtual_size: DISK_GIB }) + '\n',
  )
  fs.writeFileSync(
    path.join(work, 'Vagrantfile'),
    "# The lab's VM box: everything is set by the lab's own Vagrantfile.\nVagrant.configure('2') { |_config| }\n",
  )
  const partial = `${file}.partial`
  await $({ quiet: true, cwd: work })`tar -cf ${partial} metadata.json Vagrantfile box.img`
  fs.renameSync(partial, file) // only a complete box is ever cached
  await fs.promises.rm(work, { recursive: true, force: true })
  log(`    packed ${(fs.statSync(file).size / 2 ** 20).toFixed(0)} MiB (${took()})`)
}

/** Remove VM boxes of this lab whose inputs are gone. */
export async function pruneVmBoxes(log: (m: string) => void = console.log): Promise<void> {
  const current = vmBoxName()
  for (const name of await installedBoxes('libvirt')) {
    if (name.startsWith('iotlab-vm-') && name !== current) {
      log(`Removing outdated VM box ${name}`)
      await $({ quiet: true, nothrow: true })`vagrant box remove --force --all --provider libvirt ${name}`
    }
  }
  if (fs.existsSync(cacheDir)) {
    for (const f of fs.readdirSync(cacheDir)) {
      if (f.startsWith('iotlab-vm-') && f.endsWith('.box') && f !== `${current}.box`) fs.rmSync(path.join(cacheDir, f))
    }
  }
}
