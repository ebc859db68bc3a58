// Kernel ESP's lookups against other sites (issue 20, bench/esp-lookup.ts): the other
// sites' SAs and policies as their tunnels would leave them, each its own; their removal
// the exact mirror; the kernel's counts read back; the report's differences.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadPlan } from '../../provision/plan.js'
import { topologyFile } from '../../provision/paths.js'
import {
  espLookupBench,
  otherSites,
  REMOVE_OURS,
  parseXfrmCounts,
  XFRM_COUNTS,
  type LookupReport,
} from '../../scripts/bench/esp-lookup.js'
import { espLookupMarkdown } from '../../scripts/bench/report.js'
import type { BenchLab } from '../../scripts/bench/lab.js'
import { figure } from '../../scripts/bench/stats.js'

t.test('each other site has its own SAs and policies, and removing them names exactly what was added', async (t) => {
  const { add, remove } = otherSites(3, '198.51.100.12', ['172.31.10.0/24', '172.31.11.0/24'])
  const adds = add.trim().split('\n')
  const removes = remove.trim().split('\n')
  // Per site: 2 SAs, and 3 policies per hub LAN.
  t.equal(adds.length, 3 * (2 + 3 * 2))
  t.equal(removes.length, adds.length)
  const spis = adds.map((l) => /spi (0x[0-9a-f]+)/.exec(l)?.[1]).filter(Boolean)
  t.equal(new Set(spis).size, 6, 'every SA its own SPI')
  t.match(
    adds[0],
    /^xfrm state add src 198\.18\.0\.1 dst 198\.51\.100\.12 proto esp spi 0xc1000001 reqid 268435457 mode tunnel aead 'rfc7539esp\(chacha20,poly1305\)' 0x(5a){36} 128$/,
  )
  t.ok(
    adds.includes(
      'xfrm policy add src 10.128.3.0/24 dst 172.31.11.0/24 dir fwd tmpl src 198.18.0.3 dst 198.51.100.12 proto esp reqid 268435459 mode tunnel',
    ),
  )
  t.ok(
    adds.includes(
      'xfrm policy add src 172.31.10.0/24 dst 10.128.1.0/24 dir out tmpl src 198.51.100.12 dst 198.18.0.1 proto esp reqid 268435457 mode tunnel',
    ),
  )
  // Each removal is an addition's own key: the SA's (src, dst, spi), the policy's (selector, dir).
  const key = (l: string) =>
    l.startsWith('xfrm state') ? /src \S+ dst \S+ proto esp spi \S+/.exec(l)![0] : /src \S+ dst \S+ dir \S+/.exec(l)![0]
  t.same(removes.map(key).sort(), adds.map(key).sort())
  for (const l of removes) t.match(l, /^xfrm (state|policy) delete /)
  t.equal(otherSites(0, '198.51.100.12', ['172.31.10.0/24']).add, '\n', 'none: nothing to add')
  t.throws(() => otherSites(40000, '198.51.100.12', []), /40000 other sites: the farm's ranges hold 0 to 32767/)
})

t.test("the kernel's counts are read back, all and the other sites' own (their reqids)", async (t) => {
  t.same(parseXfrmCounts('4\n2\n9\n6\n'), { sas: 4, policies: 9, ours: { sas: 2, policies: 6 } })
  t.throws(() => parseXfrmCounts('4\n2\n'), /cannot read the kernel's SAs and policies/)
  // The reqid pattern: the other sites' (from 268435457), never charon's small ones.
  const ours = new RegExp(/grep -cE '([^']+)'/.exec(XFRM_COUNTS)![1])
  t.match('proto esp spi 0xc1000001 reqid 268435457 mode tunnel', ours)
  t.match('proto esp spi 0xc20007d0 reqid 268437456 mode tunnel', ours)
  t.notMatch('proto esp spi 0xc8b2a1f3 reqid 1 mode tunnel', ours)
  t.notMatch('proto esp spi 0xc8b2a1f3 reqid 26843 mode tunnel', ours)
})

t.test('a hub whose kernel has no ESP is refused, with the way to one that has', async (t) => {
  const plan = loadPlan(topologyFile) // every host a container here
  const lab = {} as BenchLab
  await t.rejects(
    espLookupBench(
      lab,
      plan,
      { sites: [0, 10], rounds: 1, load: { devices: 1, concurrency: 1, duration: 1, warmup: 0, runs: 1 } },
      () => {},
    ),
    /runs on lxc, whose kernel here has none .*LAB_VM_ROLES=gateway npm run lab/,
  )
})

t.test('the report gives each number of other sites against none, and the spread of none', async (t) => {
  const r: LookupReport = {
    hub: 'gw-cloud',
    points: [],
    by_sites: [
      { sites: 0, ms: figure([400, 420, 410]) },
      { sites: 1000, ms: figure([415, 405, 425]) },
    ],
  }
  const md = espLookupMarkdown(r)
  t.match(md, /\| 1000 \| 415\.0 \(405\.0 to 425\.0\) \| 415\.0, 405\.0, 425\.0 \|/)
  t.match(
    md,
    /With 1000 other sites: \+5\.0 ms per 1000 readings \(1\.2 %\) over none, 5\.0 µs per site; the rounds of none spread over 20\.0 ms/,
  )
})

t.test(
  "the other sites' entries are removed by their own keys, found in the kernel's listing; the lab's are left",
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'esp-lookup-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    // A stand-in ip: the kernel's listings as iproute2 prints them (the lab's tunnel with
    // reqid 1, one other site), and what the batch was given.
    fs.writeFileSync(
      path.join(dir, 'ip'),
      `#!/bin/sh
case "$1 $2" in
  "xfrm state") cat <<'X'
src 198.51.100.11 dst 198.51.100.12
\tproto esp spi 0xc8b2a1f3 reqid 1 mode tunnel
\treplay-window 0 flag af-unspec
\taead rfc7539esp(chacha20,poly1305) 0x00 128
src 198.18.0.7 dst 198.51.100.12
\tproto esp spi 0xc1000007 reqid 268435463 mode tunnel
\treplay-window 0
src 198.51.100.12 dst 198.18.0.7
\tproto esp spi 0xc2000007 reqid 268435463 mode tunnel
X
  ;;
  "xfrm policy") cat <<'X'
src 172.31.10.0/24 dst 172.31.20.0/24
\tdir out priority 375423
\ttmpl src 198.51.100.11 dst 198.51.100.12
\t\tproto esp spi 0xc8b2a1f3 reqid 1 mode tunnel
src 10.128.7.0/24 dst 172.31.20.0/24
\tdir fwd priority 0
\ttmpl src 198.18.0.7 dst 198.51.100.12
\t\tproto esp reqid 268435463 mode tunnel
src 0.0.0.0/0 dst 0.0.0.0/0
\tsocket in priority 0
X
  ;;
  "-batch -") cat > ${path.join(dir, 'batch')} ;;
esac
`,
      { mode: 0o755 },
    )
    const r = spawnSync('sh', ['-c', REMOVE_OURS], {
      env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
      encoding: 'utf8',
    })
    t.equal(r.status, 0, r.stderr)
    t.same(fs.readFileSync(path.join(dir, 'batch'), 'utf8').trim().split('\n'), [
      'xfrm state delete src 198.18.0.7 dst 198.51.100.12 proto esp spi 0xc1000007',
      'xfrm state delete src 198.51.100.12 dst 198.18.0.7 proto esp spi 0xc2000007',
      'xfrm policy delete src 10.128.7.0/24 dst 172.31.20.0/24 dir fwd',
    ])
  },
)
