// Secrets made at provision time on the provisioning machine, in .lab/secrets/ (0700,
// files 0600, out of git): the tunnels' PSKs, the device master key, the database
// password. Made once from the CSPRNG, then reused, so a second provision changes
// nothing; never printed. Hosts get only what their role needs, in 0600 files.
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { deriveDeviceKey } from '../services/lib/reading.js'

/** A secret of `bytes` random bytes, made on first use; its text (base64url unless asked) after. */
export function secret(
  stateDir: string,
  name: string,
  bytes = 32,
  encoding: 'base64' | 'base64url' = 'base64url',
): string {
  const dir = path.join(stateDir, 'secrets')
  const f = path.join(dir, name)
  if (!fs.existsSync(f)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    // wx: two hosts provisioned in parallel must not make two different secrets.
    try {
      fs.writeFileSync(f, randomBytes(bytes).toString(encoding) + '\n', { mode: 0o600, flag: 'wx' })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
  }
  const text = fs.readFileSync(f, 'utf8').trim()
  if (text === '') throw new Error(`${f} is empty: remove it and provision again to make a new one`)
  return text
}

/** Each device's own key, derived from the lab's device master key (hex). */
export function deviceKeys(stateDir: string, ids: string[]): Record<string, string> {
  const master = Buffer.from(secret(stateDir, 'device-master-key'), 'base64url')
  return Object.fromEntries(ids.map((id) => [id, deriveDeviceKey(master, id).toString('hex')]))
}

export const dbPassword = (stateDir: string) => secret(stateDir, 'db-ingest-password')
// The database cluster's own: PostgreSQL's superuser (Patroni's, pg_rewind's), the
// members' replication login, and the password Patroni's REST API asks before a change.
export const dbSuperuserPassword = (stateDir: string) => secret(stateDir, 'db-superuser-password')
export const dbReplicationPassword = (stateDir: string) => secret(stateDir, 'db-replication-password')
export const patroniRestPassword = (stateDir: string) => secret(stateDir, 'patroni-rest-password')
