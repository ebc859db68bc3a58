// The running lab's providers, read from Vagrant's own state
// (.vagrant/machines/HOST/PROVIDER/id), never guessed from what is installed. (Which
// provider a bring-up will use is another question, the plan's: provision/providers.ts.)
import fs from 'node:fs'
import path from 'node:path'
import { PROVIDERS, type Provider } from '../../provision/providers.js'
import { repoRoot } from '../../provision/paths.js'

/** The providers of the hosts Vagrant has created in this clone, from its own state. */
export function runningProviders(cwd = repoRoot): Map<string, Provider> {
  const found = new Map<string, Provider>()
  const dir = path.join(cwd, '.vagrant', 'machines')
  if (!fs.existsSync(dir)) return found
  for (const host of fs.readdirSync(dir)) {
    for (const p of PROVIDERS) {
      if (fs.existsSync(path.join(dir, host, p, 'id'))) found.set(host, p)
    }
  }
  return found
}

/** One word for a set of providers: the provider, or 'mixed'. */
export function providerSummary(providers: Iterable<Provider>): Provider | 'mixed' | 'none' {
  const set = new Set(providers)
  if (set.size === 0) return 'none'
  return set.size === 1 ? [...set][0] : 'mixed'
}

export const hostsOf = (providers: Record<string, Provider> | Map<string, Provider>, p: Provider) =>
  [...(providers instanceof Map ? providers : new Map(Object.entries(providers)))]
    .filter(([, v]) => v === p)
    .map(([k]) => k)
