// The configuration the provisioner writes, rendered for the default topology and kept
// as golden files (tap snapshots in tap-snapshots/test/unit/rendered.ts.test.cjs), so a
// reviewer reads the real swanctl.conf, nftables.conf, nginx.conf and pg_hba.conf in the
// diff of any change that alters them; and checked by the tools' own parsers here, as
// they are on the hosts at provision time (nft -c, nginx -t, sshd -t, promtool).
// Remake the golden files after an intended change: npm run test:unit -- --snapshot
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { nftablesConf } from '../../provision/roles/common.js'
import { pgHbaConf } from '../../provision/roles/db.js'
import { charonSteps, gateway, IKE_SA_TABLE, swanctlVars, timersConf } from '../../provision/roles/gateway.js'
import { siteFarm } from '../../provision/roles/site-farm.js'
import { prometheusConfig } from '../../provision/roles/monitor.js'
import { nginxConf } from '../../provision/roles/proxy.js'
import { roleModule } from '../../provision/roles/registry.js'
import { keepalivedConf } from '../../provision/roles/vrrp.js'
import type { Context } from '../../provision/runner.js'
import { renderFile } from '../../provision/template.js'
import { loadPlan, type Host } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'
import { FakeHost } from '../lib/fake.js'

const plan = loadPlan(topologyFile)
/** A host as provisioned on lxc: each NIC named after its network, userspace ESP unless asked. */
const ctx = (h: Host, ipsecMode: 'libipsec' | 'kernel' = 'libipsec'): Context => ({
  host: new FakeHost(h.name),
  plan,
  self: h,
  dryRun: true,
  stateDir: '/nonexistent',
  facts: {
    addresses: [],
    mgmtInterface: 'mgmt',
    virtualization: 'lxc',
    kernel: 'golden',
    interfaceOf: Object.fromEntries(h.interfaces.map((i) => [i.network, i.network])),
    ...(h.role === 'gateway' ? { ipsecMode } : {}),
  },
})
const byRole = (role: Host['role']) => plan.hosts.filter((h) => h.role === role)
const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd} || test -x /usr/sbin/${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const made: string[] = []
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rendered-'))
  made.push(d)
  return d
}
t.teardown(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true })
})
const root = process.getuid?.() === 0

t.test('nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it', async (t) => {
  const rulesets: [string, string][] = plan.hosts.map((h) => [h.name, nftablesConf(ctx(h))])
  for (const gw of byRole('gateway')) rulesets.push([`${gw.name} (kernel ESP)`, nftablesConf(ctx(gw, 'kernel'))])
  for (const [name, text] of rulesets) t.matchSnapshot(text, `${name}: /etc/nftables.conf`)
  t.test(
    'nft -c accepts each',
    {
      skip: !root
        ? 'nft -c needs root to check a ruleset'
        : !has('nft')
          ? 'no nft: `npm test` installs it as root (nftables)'
          : false,
    },
    async (t) => {
      for (const [name, text] of rulesets) {
        t.doesNotThrow(
          () => execFileSync('nft', ['-c', '-f', '-'], { input: text, stdio: 'pipe' }),
          `${name}: nft -c accepts it`,
        )
      }
    },
  )
})

t.test('swanctl.conf of each gateway', async (t) => {
  for (const gw of byRole('gateway'))
    t.matchSnapshot(
      renderFile('gateway/swanctl.conf', swanctlVars(ctx(gw))),
      `${gw.name}: /etc/swanctl/conf.d/lab.conf`,
    )
  t.matchSnapshot(timersConf(), 'every gateway: /etc/strongswan.d/lab-timers.conf')
})

t.test("charon's IKE SA table and journal, as every gateway and the site farm get them", async (t) => {
  // strongSwan rounds a table size up to a power of two and warns against more than 512
  // locks ("Tuning IKE SA Lookup"): the values are what charon will use, and hashed.
  const pow2 = (n: number) => Number.isInteger(n) && n > 1 && (n & (n - 1)) === 0
  t.ok(pow2(IKE_SA_TABLE.size) && pow2(IKE_SA_TABLE.segments), 'size and locks are powers of two above 1')
  t.ok(IKE_SA_TABLE.segments <= 512 && IKE_SA_TABLE.segments <= IKE_SA_TABLE.size)
  const table = renderFile('gateway/charon-ike-sa-table.conf', IKE_SA_TABLE)
  t.match(table, /^charon \{\n {4}ikesa_table_size = 1024\n {4}ikesa_table_segments = 16\n\}$/m)
  const settings = (conf: string) => conf.replace(/^#.*\n/gm, '')
  t.equal(
    settings(renderFile('gateway/charon-log.conf', { dpd_s: 2 })),
    'charon-systemd {\n    journal {\n        net = 0\n        enc = 0\n    }\n}\n',
    "a gateway's journal: packets and their encoding left out, the rest at charon's default",
  )
  t.equal(
    settings(renderFile('site-farm/charon-log.conf', { host: 'site-farm' })),
    'charon-systemd {\n    journal {\n        default = 0\n    }\n}\n',
    "the farm's: SAs up and down and errors",
  )
})

t.test('the gateway and site-farm roles install the IKE SA table and the journal settings', async (t) => {
  // Run every charon step against a host that records what is written where: a step
  // dropped from charonSteps, or a role that stopped taking them, installs nothing.
  const written = new Map<string, string>()
  const host = {
    name: 'recording',
    async exec(cmd: string, o: { stdin?: string } = {}) {
      const target = / && mv -f \S+ (\S+) && touch/.exec(cmd)?.[1]
      if (target && o.stdin !== undefined) written.set(target.replace(/^'|'$/g, ''), o.stdin)
      return { code: 0, stdout: 'absent\n', stderr: '' }
    },
    async close() {},
  }
  const [gw] = byRole('gateway')
  for (const step of charonSteps) await step.run({ ...ctx(gw), host, dryRun: false })
  t.equal(
    written.get('/etc/strongswan.d/lab-ike-sa-table.conf'),
    renderFile('gateway/charon-ike-sa-table.conf', IKE_SA_TABLE),
  )
  t.match(written.get('/etc/strongswan.d/lab-log.conf'), /net = 0\n\s+enc = 0/)
  for (const role of [gateway.role, siteFarm.role])
    t.ok(
      charonSteps.every((s) => role.steps.includes(s)),
      `the ${role.name} role runs every charon step`,
    )
  const farmLog = siteFarm.role.steps.find((s) => /logs what a site's operator reads first/.test(s.name))
  t.ok(farmLog, "the farm's journal at level 0 is a step of its role")
})

t.test('pg_hba.conf of the database', async (t) => {
  for (const db of byRole('db')) t.matchSnapshot(pgHbaConf(ctx(db)), `${db.name}: pg_hba.conf`)
})

t.test('prometheus.yml of the monitor, as promtool reads it', async (t) => {
  for (const m of byRole('monitor')) {
    const text = prometheusConfig(ctx(m))
    t.matchSnapshot(text, `${m.name}: /etc/prometheus/prometheus.yml`)
    if (!has('promtool')) {
      t.test(
        'a check the tools here cannot run',
        { skip: 'no promtool: `npm test` installs it as root (Debian package prometheus)' },
        async () => {},
      )
      continue
    }
    const dir = tmp()
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), text)
    t.match(
      execFileSync('promtool', ['check', 'config', '--syntax-only', path.join(dir, 'prometheus.yml')], {
        encoding: 'utf8',
      }),
      /SUCCESS/,
      'promtool accepts it',
    )
  }
})

t.test("keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it", async (t) => {
  const members = plan.vrrp.flatMap((g) => g.members.map((m) => plan.hosts.find((h) => h.name === m.host)!))
  t.ok(members.length >= 2, 'the default topology has a pair')
  for (const h of members) {
    const health = (c: Context) => roleModule(h.role).health!(c)
    const text = keepalivedConf(ctx(h), health(ctx(h)))
    t.matchSnapshot(text, `${h.name}: /etc/keepalived/keepalived.conf`)
    if (!has('keepalived')) {
      t.test(
        'a check the tools here cannot run',
        { skip: 'no keepalived: `npm test` installs it as root' },
        async () => {},
      )
      continue
    }
    // Checked with one of this machine's NICs (read only): keepalived -t fails on an
    // interface the machine lacks, and refuses lo.
    const nic = Object.keys(os.networkInterfaces()).find((n) => n !== 'lo')!
    const here = ctx(h)
    const interfaceOf = Object.fromEntries(h.interfaces.map((i) => [i.network, nic]))
    const onNic = { ...here, facts: { ...here.facts, interfaceOf } }
    const f = path.join(tmp(), 'keepalived.conf')
    // A check script the provisioner installs on the member (the hub's lab-hub-health) is
    // not on this machine, and keepalived -t names a missing one: /bin/true stands in.
    const conf = keepalivedConf(onNic, health(onNic)).replace(
      /script "\/usr\/local\/lib\/lab\/[^"]+"/g,
      'script "/bin/true"',
    )
    fs.writeFileSync(f, conf)
    // keepalived -t exits 0 on a good file and names the line of a bad one.
    const r = (() => {
      try {
        execFileSync('keepalived', ['-t', '-f', f], { stdio: 'pipe' })
        return ''
      } catch (e) {
        return String((e as { stderr?: Buffer }).stderr ?? e)
      }
    })()
    t.equal(r, '', `${h.name}: keepalived -t accepts it`)
  }
  // The check fails a bad file (so the pass above means something).
  const bad = path.join(tmp(), 'bad.conf')
  fs.writeFileSync(bad, 'vrrp_instance x {\n  no_such_keyword 1\n}\n')
  if (has('keepalived'))
    t.throws(() => execFileSync('keepalived', ['-t', '-f', bad], { stdio: 'pipe' }), 'keepalived -t refuses a bad file')
})

t.test('nginx.conf of the proxy, as nginx -t reads it', async (t) => {
  for (const proxy of byRole('proxy')) {
    const text = nginxConf(ctx(proxy))
    t.matchSnapshot(text, `${proxy.name}: /etc/nginx/nginx.conf`)
    if (!has('nginx') || !has('openssl')) {
      t.test(
        'a check the tools here cannot run',
        { skip: 'no nginx or openssl: `npm test` installs them as root (nginx-light, openssl)' },
        async () => {},
      )
      continue
    }
    if (!root) {
      t.test(
        'a check the tools here cannot run',
        { skip: 'nginx -t as the lab runs it needs root (user www-data)' },
        async () => {},
      )
      continue
    }
    // The files it names, made here: a CA, the proxy's certificate, a CRL; logs and pid in the folder.
    const dir = tmp()
    const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { cwd: dir, stdio: 'pipe' })
    sh(
      'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj "/CN=test CA" -days 1 2>/dev/null',
    )
    sh(
      'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cert.key -out cert.pem -subj "/CN=proxy" -days 1 2>/dev/null',
    )
    sh(
      'printf "[ca]\\ndefault_ca=c\\n[c]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\ndefault_md=sha256\\ndefault_crl_days=1\\n" > ca.cnf && : > index.txt && echo 01 > crlnumber && openssl ca -config ca.cnf -gencrl -keyfile ca.key -cert ca.pem -out crl.pem 2>/dev/null',
    )
    const paths = [...new Set(text.match(/\/[\w./-]+\.(pem|key|crl)\b/g) ?? [])]
    let local = text
    for (const p of paths) {
      const kind = /crl/.test(p)
        ? 'crl.pem'
        : /ca\.pem$|-ca\.pem$/.test(p)
          ? 'ca.pem'
          : /\.key$/.test(p)
            ? 'cert.key'
            : 'cert.pem'
      local = local.split(p).join(path.join(dir, kind))
    }
    local = local.replace(/\/var\/log\/nginx\//g, `${dir}/`).replace(/^pid .*$/m, `pid ${dir}/nginx.pid;`)
    fs.writeFileSync(path.join(dir, 'nginx.conf'), local)
    fs.writeFileSync(path.join(dir, 'broken.conf'), local.replace('least_conn;', 'least_conn nonsense;'))
    // nginx -t binds what it listens on: in a network namespace of its own whose loopback
    // holds the proxy's addresses (nothing there reaches any network).
    const listen = [...new Set([...local.matchAll(/^\s*listen ([\d.]+):\d+/gm)].map((m) => m[1]))]
    const nginxT = (conf: string) => {
      try {
        execFileSync(
          'unshare',
          [
            '-n',
            'sh',
            '-c',
            `ip link set lo up && ${listen
              .filter((a) => !a.startsWith('127.'))
              .map((a) => `ip addr add ${a}/32 dev lo && `)
              .join('')}nginx -t -q -c ${path.join(dir, conf)} -e ${path.join(dir, 'error.log')}`,
          ],
          { stdio: 'pipe' },
        )
        return { ok: true, out: '' }
      } catch (e) {
        return { ok: false, out: String((e as { stderr?: Buffer }).stderr ?? e) }
      }
    }
    const r = nginxT('nginx.conf')
    t.ok(
      r.ok,
      `nginx -t accepts it (${paths.length} certificate, key and CRL paths pointed at test files; listening on ${listen.join(', ')})${r.ok ? '' : `: ${r.out}`}`,
    )
    const b = nginxT('broken.conf')
    t.ok(!b.ok && /least_conn/.test(b.out), `and refuses a broken one (control): ${b.out.trim().split('\n')[0]}`)
  }
})

t.test("sshd's drop-in, as sshd -t reads it", async (t) => {
  const text = renderFile('common/sshd.conf', {})
  t.matchSnapshot(text, '/etc/ssh/sshd_config.d/lab.conf')
  if (!has('sshd')) {
    t.test(
      'a check the tools here cannot run',
      { skip: 'no sshd: `npm test` installs it as root (openssh-server; never started here)' },
      async () => {},
    )
    return
  }
  const dir = tmp()
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')])
  fs.writeFileSync(path.join(dir, 'lab.conf'), text)
  fs.mkdirSync('/run/sshd', { recursive: true }) // sshd -t wants its privilege-separation folder
  const sshd = (file: string) =>
    execFileSync('/usr/sbin/sshd', ['-t', '-f', file, '-h', path.join(dir, 'host_key')], { stdio: 'pipe' })
  t.doesNotThrow(() => sshd(path.join(dir, 'lab.conf')), 'sshd -t accepts it')
  fs.writeFileSync(path.join(dir, 'broken.conf'), `${text}\nPasswordAuthentication maybe\n`)
  t.throws(() => sshd(path.join(dir, 'broken.conf')), 'and refuses a broken one (control)')
})
