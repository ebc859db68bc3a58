// The lxc box: a Debian 12 root built with mmdebstrap from box/packages.txt and
// box/customize.sh. Its name carries a hash of those files, so a changed package list
// is a new box, built once and cached; an unchanged one is never rebuilt.
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { boxPackages } from '../../provision/box-packages.js'
import { boxDir, cacheDir } from '../../provision/paths.js'

export const SUITE = 'bookworm'
const MIRROR = process.env.LAB_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian'
const SECURITY_MIRROR = process.env.LAB_DEBIAN_SECURITY_MIRROR ?? 'http://deb.debian.org/debian-security'

/** The Debian sources both boxes are built from (mirrors overridable for a local one). */
export function debianSources(): string[] {
  return [
    `deb ${MIRROR} ${SUITE} main`,
    `deb ${MIRROR} ${SUITE}-updates main`,
    `deb ${SECURITY_MIRROR} ${SUITE}-security main`,
  ]
}

/** Box name derived from the box's inputs: any change to them names a new box. */
export function boxName(): string {
  const hash = createHash('sha256')
  for (const file of ['packages.txt', 'customize.sh']) {
    hash.update(file).update(fs.readFileSync(path.join(boxDir, file)))
  }
  return `iotlab-debian12-${hash.digest('hex').slice(0, 12)}`
}

/** Boxes Vagrant has, by name; with a provider, only those for it. */
export async function installedBoxes(provider?: string): Promise<string[]> {
  const out = await $({ quiet: true })`vagrant box list --machine-readable`
  const names: string[] = []
  let current = ''
  for (const f of out.stdout.split('\n').map((l) => l.split(','))) {
    if (f[2] === 'box-name') current = f[3]
    if (f[2] === 'box-provider' && (!provider || f[3] === provider) && !names.includes(current)) names.push(current)
  }
  return names
}

/** Vagrant's well-known insecure public key, which the box authorizes for user vagrant. */
export function vagrantInsecureKey(): string {
  const candidates = [
    ...globDirs('/usr/share/rubygems-integration/all/gems', /^vagrant-\d/).map((d) =>
      path.join(d, 'keys', 'vagrant.pub'),
    ),
    ...globDirs('/opt/vagrant/embedded/gems/gems', /^vagrant-\d/).map((d) => path.join(d, 'keys', 'vagrant.pub')),
  ]
  const found = candidates.find((f) => fs.existsSync(f))
  if (!found)
    throw new Error(
      `Vagrant's insecure public key (keys/vagrant.pub) not found in ${candidates.join(', ') || 'any vagrant gem'}: is vagrant installed?`,
    )
  return found
}

function globDirs(dir: string, pattern: RegExp): string[] {
  if (!fs.existsSync(dir)) return []
  return fs
    .readdirSync(dir)
    .filter((n) => pattern.test(n))
    .map((n) => path.join(dir, n))
}

export interface BoxResult {
  name: string
  built: boolean
  seconds: number
}

/** Ensure the box is known to Vagrant, building it if no cached file exists. */
export async function ensureBox(log: (msg: string) => void = console.log): Promise<BoxResult> {
  const name = boxName()
  const started = Date.now()
  if ((await installedBoxes()).includes(name)) {
    return { name, built: false, seconds: 0 }
  }
  const file = path.join(cacheDir, `${name}.box`)
  let built = false
  if (!fs.existsSync(file)) {
    await buildBox(name, file, log)
    built = true
  }
  log(`Adding box ${name} to Vagrant`)
  await $({ quiet: true })`vagrant box add --force --name ${name} ${file}`
  return { name, built, seconds: (Date.now() - started) / 1000 }
}

async function buildBox(name: string, file: string, log: (msg: string) => void): Promise<void> {
  const work = path.join(cacheDir, `build-${name}`)
  await fs.promises.rm(work, { recursive: true, force: true })
  await fs.promises.mkdir(path.join(work, 'rootfs'), { recursive: true })
  const packages = boxPackages()
  log(`Building box ${name}: mmdebstrap ${SUITE} with ${packages.length} packages (about a minute)`)
  const sources = debianSources()
  const hook = `${path.join(boxDir, 'customize.sh')} "$1" ${vagrantInsecureKey()}`
  await $({
    quiet: true,
  })`mmdebstrap --quiet --variant=apt --include=${packages.join(',')} --customize-hook=${hook} ${SUITE} ${path.join(work, 'rootfs')} ${sources}`
  log('Packing the box')
  fs.writeFileSync(
    path.join(work, 'metadata.json'),
    JSON.stringify({ provider: 'lxc', version: '1.0.0', 'template-opts': {} }) + '\n',
  )
  fs.writeFileSync(path.join(work, 'lxc-config'), 'lxc.include = /usr/share/lxc/config/common.conf\n')
  await $({ quiet: true, cwd: work })`tar --numeric-owner --xattrs -czf rootfs.tar.gz ./rootfs`
  const partial = `${file}.partial`
  await $({ quiet: true, cwd: work })`tar -cf ${partial} metadata.json lxc-config rootfs.tar.gz`
  fs.renameSync(partial, file) // only a complete box is ever cached
  await fs.promises.rm(work, { recursive: true, force: true })
}

/** Remove boxes of this lab whose inputs are gone (older package lists). */
export async function pruneBoxes(log: (msg: string) => void = console.log): Promise<void> {
  const current = boxName()
  for (const name of await installedBoxes()) {
    if (name.startsWith('iotlab-debian12-') && name !== current) {
      log(`Removing outdated box ${name}`)
      await $({ quiet: true, nothrow: true })`vagrant box remove --force --all ${name}`
    }
  }
  if (fs.existsSync(cacheDir)) {
    for (const f of fs.readdirSync(cacheDir)) {
      if (f.endsWith('.box') && f !== `${current}.box`) fs.rmSync(path.join(cacheDir, f))
    }
  }
}
