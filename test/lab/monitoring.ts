// Watching the lab: after `npm run lab`, Prometheus on the monitor has every target the
// topology implies, up (the IoT site's through the tunnel); each host admits the
// monitor, and only the monitor, on what it scrapes; the gateways report their SAs and
// traffic; and the console page a person opens, loaded in a real headless Chromium,
// shows every host and graphs that hold data.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MONITOR_PORTS } from '../../provision/ports.js'
import { waitForTunnel } from '../lib/ipsec.js'
import { labCli, openLab, waitFor } from '../lib/lab.js'
import { repoRoot } from '../../provision/paths.js'
import { promQuery } from '../lib/monitor.js'
import { assertReach, can, cannot } from '../lib/probe.js'

const CHROMIUM = '/usr/bin/chromium'
const lab = await openLab(t, { requires: { monitor: true } })
if (lab) {
  const targets = lab.plan.services.scrapeTargets

  t.before(async () => {
    await waitForTunnel(lab, lab.plan.vpn!.tunnels[0])
  })

  t.test('every target the topology implies is scraped, and up', async (t) => {
    const upNow = async () => new Set((await promQuery(lab, 'up == 1')).map((s) => `${s.metric.job} ${s.metric.host}`))
    const up = await waitFor(
      'every target up',
      async () => {
        const u = await upNow()
        return targets.every((x) => u.has(`${x.job} ${x.host}`)) ? u : undefined
      },
      60_000,
      2000,
    ).catch(upNow)
    for (const x of targets) t.ok(up.has(`${x.job} ${x.host}`), `${x.job} on ${x.host} (${x.address}:${x.port}) is up`)
    const all = await promQuery(lab, 'up')
    t.equal(all.length, targets.length, `nothing else is scraped (${all.length} targets)`)
  })

  t.test('each host admits the monitor, and only the monitor, on what it scrapes', async (t) => {
    const monitor = lab.byRole('monitor')[0]
    const [proxy] = lab.byRole('proxy')
    await assertReach(
      t,
      (h, c) => lab.sh(h, c),
      targets
        .filter((x) => x.host !== monitor.name && x.host !== proxy.name)
        .flatMap((x) => [
          can(monitor.name, x.address, x.port, `the monitor reaches ${x.job} on ${x.host}`),
          ...(x.job !== 'ingest'
            ? [cannot(proxy.name, x.address, x.port, `the proxy does not (${x.host}:${x.port})`)]
            : []),
        ]),
      1,
    )
  })

  t.test('the gateways report their tunnels: SAs up, traffic counted, the data path', async (t) => {
    for (const gw of lab.byRole('gateway')) {
      // A hub pair's standby holds no SA by design: it reports each tunnel as down (0, not
      // absent); the active member, and every single gateway, as up. Polled: the monitor
      // sees a change (an earlier failover) a scrape and a metrics write later.
      const group = lab.plan.vrrp.find((g) => g.members.some((m) => m.host === gw.name))
      const standby = !!group && (await lab.activeMember(group.name)).name !== gw.name
      const want = standby ? '0' : '1'
      const up = await waitFor(
        `the monitor to see ${gw.name}'s tunnels ${standby ? 'down (the standby)' : 'up'}`,
        async () => {
          const s = await promQuery(lab, `lab_ipsec_child_sa_up{host="${gw.name}"}`)
          return s.length > 0 && s.every((x) => x.value[1] === want) && s
        },
        30_000,
        1000,
      ).catch(() => [] as Awaited<ReturnType<typeof promQuery>>)
      t.ok(
        up.length > 0,
        standby
          ? `${gw.name} (${group.name}'s standby): every tunnel configured, no SA (${up.map((s) => s.metric.conn).join(', ')})`
          : `${gw.name}: every tunnel has an installed child SA (${up.map((s) => s.metric.conn).join(', ')})`,
      )
      const mode = await promQuery(lab, `lab_ipsec_datapath_info{host="${gw.name}"}`)
      t.same(
        mode.map((s) => s.metric.mode),
        [lab.facts(gw.name).ipsecMode ?? 'libipsec'],
        `${gw.name}: the data path it really uses`,
      )
    }
    // A rate needs two scrapes of the stream since the tunnel came up: poll for it.
    const rate = async () =>
      Number((await promQuery(lab, 'sum(rate(lab_ipsec_child_bytes_in_total[1m]))'))[0]?.value[1] ?? 0)
    const flowing = await waitFor(
      'a rate of bytes through the tunnel',
      async () => (await rate()) || undefined,
      60_000,
      2000,
    ).catch(() => 0)
    t.ok(flowing > 0, `bytes flow through the tunnel (${Math.round(flowing)} B/s)`)
  })

  // Chromium comes with npm test's own set-up (scripts/lab.ts tools): missing, the check
  // records a skip that names how to get it, and under CI (LAB_REQUIRED) fails.
  const noChromium = fs.existsSync(CHROMIUM)
    ? false
    : `no ${CHROMIUM}: \`npm test\` installs it as root (Debian package chromium)`
  if (noChromium && process.env.LAB_REQUIRED) t.fail(`the console page cannot be seen: ${noChromium}`)
  t.test(
    'the console page, in headless Chromium: every host, graphs a person can read',
    { skip: noChromium },
    async (t) => {
      const { default: puppeteer } = await import('puppeteer-core')
      const browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] })
      t.teardown(() => browser.close())
      const page = await browser.newPage()
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(String(e)))
      const url = `${lab.plan.services.monitor?.url}/consoles/lab.html`
      const res = await page.goto(url, { waitUntil: 'networkidle0', timeout: 60_000 })
      t.equal(res?.status(), 200, `${url} loads`)
      const hosts = await page.$$eval('#hosts tr[data-host]', (rows) =>
        rows.map((r) => `${r.getAttribute('data-host')} ${r.className}`),
      )
      for (const h of lab.plan.hosts) t.ok(hosts.includes(`${h.name} up`), `${h.name} is listed, up`)
      // Each graph draws its series as SVG paths; wait for them, then check they hold points.
      await page
        .waitForFunction(() => [...document.querySelectorAll('.lab-graph')].every((g) => g.querySelector('svg path')), {
          timeout: 30_000,
        })
        .catch(() => undefined)
      const graphs = await page.$$eval('.lab-graph', (gs) =>
        gs.map((g) => ({
          id: g.id,
          points: Math.max(
            0,
            ...[...g.querySelectorAll('svg path')].map((p) => (p.getAttribute('d') ?? '').split(/[LMC]/).length - 1),
          ),
        })),
      )
      t.same(
        graphs.map((g) => g.id),
        ['readings', 'latency', 'backlog', 'tunnel', 'share'],
        'the five graphs',
      )
      for (const g of graphs) t.ok(g.points > 2, `${g.id}: the graph holds data (${g.points} points)`)
      // As a person reads them: each graph's title, and a legend that names each line by
      // what it is (a host, a backend, a gateway), never the console's "undefined{...}".
      const read = await page.$$eval('.graph', (gs) =>
        gs.map((g) => ({
          id: g.querySelector('.lab-graph')?.id ?? '',
          title: g.querySelector('h2')?.textContent?.trim() ?? '',
          axis: g.querySelector('.prom_graph_ytitle')?.textContent?.trim() ?? '',
          legend: [...g.querySelectorAll('.rickshaw_legend .label, li .label')]
            .map((l) => l.textContent?.trim() ?? '')
            .sort(),
        })),
      )
      const names = (role: string) =>
        lab.plan.hosts
          .filter((h) => h.role === role)
          .map((h) => h.name)
          .sort()
      const want: Record<string, { title: RegExp; legend: string[]; axis: string }> = {
        readings: { title: /^Readings stored per second$/, legend: ['all backends'], axis: 'readings (/s)' },
        latency: { title: /^p99 time to answer a POST \/readings$/, legend: ['p99, all backends'], axis: 'time (s)' },
        backlog: {
          title: /^Readings waiting in the clients' outboxes$/,
          legend: names('iot-client'),
          axis: 'readings',
        },
        tunnel: { title: /^Tunnel throughput/, legend: names('gateway'), axis: 'throughput (b/s)' },
        share: { title: /^Each backend's share/, legend: names('backend'), axis: 'readings (/s)' },
      }
      for (const g of read) {
        t.match(g.title, want[g.id]?.title ?? /^$/, `${g.id}: titled "${g.title}"`)
        // Every host of the role has its line; a graph of the last half hour may also hold a
        // host the lab had then (vpn-sites adds a second site and removes it): named too.
        const w = want[g.id]?.legend ?? []
        t.same(
          w.filter((x) => !g.legend.includes(x)),
          [],
          `${g.id}: the legend names ${w.join(', ')} (${g.legend.join(', ')})`,
        )
        t.same(
          g.legend.filter((x) => !w.includes(x) && !/^[a-z][a-z0-9-]*$/.test(x)),
          [],
          `${g.id}: and nothing but names (no "undefined{...}")`,
        )
        t.equal(
          g.axis,
          want[g.id]?.axis,
          `${g.id}: its axis says "${g.axis}": what and the unit, short enough to stay beside its graph`,
        )
      }
      t.notMatch(
        await page.$eval('body', (b) => b.textContent ?? ''),
        /undefined/,
        'nothing on the page reads "undefined"',
      )
      // For a reviewer: what a person saw (not in git; the path is printed).
      const shot = path.join(repoRoot, 'test', 'artifacts', 'console.png')
      fs.mkdirSync(path.dirname(shot), { recursive: true })
      await page.setViewport({ width: 1280, height: 1600 })
      await page.screenshot({ path: shot, fullPage: true })
      t.comment(`screenshot of the console page: ${shot}`)
      t.same(errors, [], 'no script error on the page')
    },
  )

  t.test("lab:status shows the monitor's view: readings per second, backlog, tunnels, alerts", async (t) => {
    const out = (await labCli('scripts/lab.ts', ['status'])).stdout
    t.match(out, new RegExp(`Monitor \\(${lab.plan.services.monitor?.url!.replace(/[.:/]/g, '\\$&')}, console: `))
    const rate = Number(/readings stored +([\d.]+)\/s/.exec(out)?.[1])
    t.ok(rate > 0, `readings per second over the last minute (${rate})`)
    t.match(out, /backlog +\d+ readings waiting/)
    t.match(out, new RegExp(`tunnels +.*${lab.plan.vpn!.hub} in [\\d.]+ [kM]?bit/s`))
    t.match(out, /alerts firing +\S/)
  })

  t.test('Prometheus answers the provisioning machine on the management network, and nobody else there', async (t) => {
    const m = lab.byRole('monitor')[0]
    const [gw] = lab.byRole('gateway')
    t.notOk(
      (await lab.sh(gw.name, `nc -z -w 2 ${m.mgmt.address} ${MONITOR_PORTS.prometheus}`)).code === 0,
      `${gw.name} cannot reach it on the management network`,
    )
  })
}
