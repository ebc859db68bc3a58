// The lab's alert rules, checked by Prometheus's own tool: `promtool check rules` on the
// file the monitor gets, `promtool test rules` on made-up series (each alert fires when
// it should, not before, and resolves), and every alert has such a test.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { repoRoot } from '../../provision/paths.js'

const rules = path.join(repoRoot, 'provision/templates/monitor/alerts.yml')
const tests = path.join(repoRoot, 'test/promtool/alerts.test.yml')
const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => fs.existsSync(p))

t.test('every alert the lab ships has a promtool test that expects it to fire', async (t) => {
  const names = (parse(fs.readFileSync(rules, 'utf8')).groups as { rules: { alert?: string }[] }[])
    .flatMap((g) => g.rules.map((r) => r.alert))
    .filter(Boolean)
  const tested = new Set(
    (
      parse(fs.readFileSync(tests, 'utf8')).tests as {
        alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[]
      }[]
    )
      .flatMap((x) => x.alert_rule_test ?? [])
      .filter((a) => a.exp_alerts.length > 0)
      .map((a) => a.alertname),
  )
  t.ok(names.length >= 8, `${names.length} alerts`)
  t.same(
    names.filter((n) => !tested.has(n!)),
    [],
    'none without a firing test',
  )
})

t.test(
  'promtool: the rules are valid, and fire and resolve as the tests expect',
  { skip: promtool ? false : 'promtool is not installed: `npm test` installs it as root (Debian package prometheus)' },
  async (t) => {
    const check = execFileSync(promtool!, ['check', 'rules', rules], { encoding: 'utf8' })
    t.match(check, /SUCCESS: \d+ rules found/)
    let out: string
    try {
      out = execFileSync(promtool!, ['test', 'rules', tests], { encoding: 'utf8', cwd: path.dirname(tests) })
    } catch (e) {
      out = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`
    }
    t.match(out, /SUCCESS/, out.includes('FAILED') ? out.trim() : 'promtool test rules: SUCCESS')
  },
)
