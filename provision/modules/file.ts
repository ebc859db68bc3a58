// Ensure a file has exactly this content, mode and owner. Compares first (one round
// trip), writes only on a difference, through a staged copy that is validated before
// it replaces the live file, so a bad config never goes live.
import { createHash } from 'node:crypto'
import { raw, sh } from '../ssh.js'
import type { Context, Step } from '../runner.js'

export interface FileSpec {
  path: string
  content: string | ((ctx: Context) => string | Promise<string>)
  mode?: string
  owner?: string
  group?: string
  /** Command that checks the staged copy; {} is replaced by its path. */
  validate?: string
}

export async function ensureFileContent(
  ctx: Pick<Context, 'host' | 'dryRun'>,
  spec: FileSpec & { content: string },
): Promise<boolean> {
  const mode = spec.mode ?? '0644'
  const owner = spec.owner ?? 'root'
  const group = spec.group ?? owner
  const want = createHash('sha256').update(spec.content).digest('hex')
  const p = spec.path
  const probe = await ctx.host.exec(
    sh`if [ -f ${p} ]; then stat -c '%a %U %G' ${p}; sha256sum < ${p}; else echo absent; fi`,
  )
  const [meta, sum] = probe.stdout.trim().split('\n')
  const sameContent = sum?.split(' ')[0] === want
  const sameMeta = meta === `${Number.parseInt(mode, 8).toString(8)} ${owner} ${group}`
  if (sameContent && sameMeta) return false
  if (ctx.dryRun) return true
  if (sameContent) {
    await ctx.host.exec(sh`chown ${`${owner}:${group}`} ${p} && chmod ${mode} ${p}`)
    return true
  }
  const staged = `${spec.path}.lab-staged`
  // validate is a command template from the role (shell); {} is the staged copy, quoted.
  const validate = spec.validate
    ? sh` && { ${raw(spec.validate.replaceAll('{}', sh`${staged}`))} || { rm -f ${staged}; exit 3; }; }`
    : ''
  // touch after the move: the file's time is when its new content arrived, not when it
  // was staged. A watcher that compares times (the hub watch: pki --verify again only on
  // a certificate or CRL newer than its last run) would otherwise miss a file staged
  // before its run and moved in during it.
  await ctx.host.exec(
    sh`mkdir -p "$(dirname ${p})" && umask 077 && cat > ${staged} && chown ${`${owner}:${group}`} ${staged} && chmod ${mode} ${staged}${raw(validate)} && mv -f ${staged} ${p} && touch -c ${p}`,
    { stdin: spec.content },
  )
  return true
}

export function file(name: string, spec: FileSpec, notify?: string[]): Step {
  return {
    name,
    notify,
    async run(ctx) {
      const content = typeof spec.content === 'function' ? await spec.content(ctx) : spec.content
      return ensureFileContent(ctx, { ...spec, content })
    },
  }
}

export function absent(name: string, path: string, notify?: string[]): Step {
  return {
    name,
    notify,
    async run(ctx) {
      const r = await ctx.host.exec(sh`test -e ${path}`, { check: false })
      if (r.code !== 0) return false
      if (!ctx.dryRun) await ctx.host.exec(sh`rm -f ${path}`)
      return true
    },
  }
}

/** Ensure a directory exists with this mode and owner (a service's config folder, say). */
export function directory(name: string, spec: { path: string; mode: string; owner?: string; group?: string }): Step {
  const owner = spec.owner ?? 'root'
  const group = spec.group ?? owner
  const p = spec.path
  return {
    name,
    async run(ctx) {
      const r = await ctx.host.exec(sh`stat -c '%F %a %U %G' ${p}`, { check: false })
      if (r.stdout.trim() === `directory ${Number.parseInt(spec.mode, 8).toString(8)} ${owner} ${group}`) return false
      if (!ctx.dryRun)
        await ctx.host.exec(sh`mkdir -p ${p} && chown ${`${owner}:${group}`} ${p} && chmod ${spec.mode} ${p}`)
      return true
    },
  }
}
