// The Debian packages every lab host has: the box is built with them
// (scripts/lib/box.ts) and the base role ensures them, so a host made any other way
// (a VM from a cloud image, say) ends up the same.
import fs from 'node:fs'
import path from 'node:path'
import { boxDir } from './paths.js'

/** A package list: one name a line, `#` comments (box/packages.txt by default). */
export function boxPackages(text = fs.readFileSync(path.join(boxDir, 'packages.txt'), 'utf8')): string[] {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean)
}
