// The operator's commands on the running lab, run as a user runs them (npm scripts'
// CLI): lab:impair makes real loss on a link and takes it back, lab:status lists it,
// delay is refused where the kernel has no netem; lab:capture sees the tunnel's ESP on
// the simulated internet and writes a pcap Wireshark can read; lab:graph draws the lab
// in its live state; bad arguments are refused with a sentence naming the argument.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { waitForTunnel } from '../lib/ipsec.js'
import { labCli, openLab, waitFor } from '../lib/lab.js'
import { providerOps } from '../../scripts/lib/providers.js'

const lab = await openLab(t)
if (lab) {
  const [tunnel] = lab.plan.vpn!.tunnels
  const [client] = lab.byRole('iot-client')
  const wan = lab.plan.networks.find((n) => n.kind === 'wan')!.name
  // The proxy service's address (a pair's virtual one): where devices' traffic goes.
  const proxyAddr = lab.plan.services.proxy!.address
  const cli = (...args: string[]) => labCli('scripts/lab.ts', args)
  const refused = async (args: string[]) => {
    try {
      await cli(...args)
      return ''
    } catch (e) {
      return String((e as { stderr?: string }).stderr ?? e)
    }
  }
  /** Pings from the IoT client to the proxy, through the tunnel: bounded in count and time. */
  const pings = async (count: number) => {
    const out = (await lab.sh(client.name, `ping -q -n -c ${count} -i 0.05 -W 1 ${proxyAddr}`)).stdout
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out)
    return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0) }
  }

  // With VM gateways (npm run test:vm) only what differs on a VM is selected: a host's
  // own rules and netem inside the guest, and a capture streamed from it. The
  // bridge-side loss, the refusals and the graph are the same code whatever the
  // provider: selected with lxc gateways (npm test) alone.
  const sameOnVms = { gateways: 'lxc' } as const
  /** Whatever a test fails at, the links it impaired are clear again when it ends. */
  const clearAfter = (t: Parameters<typeof lab.test>[0], ...links: string[]) =>
    t.teardown(async () => {
      for (const l of links) await cli('impair', l, '--clear').catch(() => {})
    })

  t.before(async () => {
    await waitForTunnel(lab, tunnel)
  })
  t.teardown(async () => {
    await cli('impair', wan, '--clear').catch(() => {})
    await cli('impair', `${tunnel.site}:${wan}`, '--clear').catch(() => {})
  })

  lab.test(
    t,
    'lab:impair: random loss on the simulated internet, listed by lab:status, then cleared',
    sameOnVms,
    async (t) => {
      clearAfter(t, wan)
      t.equal((await pings(20)).received, 20, 'control: no loss before')
      const set = await cli('impair', wan, '--loss', '30')
      t.match(set.stdout, new RegExp(`${wan}: 30% loss`))
      t.match(
        (await cli('status')).stdout,
        new RegExp(`Link impairments \\(npm run lab:impair -- LINK --clear\\): ${wan} 30% loss`),
      )
      const lossy = await pings(100)
      // Each ping crosses the internet twice (ESP both ways): about half come back.
      t.ok(
        lossy.received >= 20 && lossy.received <= 80,
        `with 30 % loss each way, ${lossy.received} of ${lossy.sent} pings came back`,
      )
      await cli('impair', wan, '--clear')
      t.notMatch((await cli('status')).stdout, /Link impairments/, 'lab:status lists none after --clear')
      t.equal((await pings(20)).received, 20, 'no loss after')
    },
  )

  t.test("lab:impair on a host's interface: 100 % loss on the site's uplink cuts the site off", async (t) => {
    clearAfter(t, `${tunnel.site}:${wan}`)
    await cli('impair', `${tunnel.site}:${wan}`, '--loss', '100')
    t.equal((await pings(10)).received, 0, 'nothing crosses')
    await cli('impair', `${tunnel.site}:${wan}`, '--clear')
    const t0 = Date.now()
    await waitForTunnel(lab, tunnel, 60_000)
    // The tunnel listed as up is not yet traffic through it: on emulated VM gateways the
    // first ten pings after --clear got fewer than nine answers (CI, 6 Dec 2026; the
    // cause not pinned down: a DPD round or the kernel's SA state catching up). Asked
    // every round until nine of ten come back, within the tunnel's own recovery bound
    // (60 s: DPD and a new IKE SA, as vpn-recovery.ts measures); the rounds are printed.
    const rounds: number[] = []
    const back = await waitFor(
      'nine of ten pings through the tunnel',
      async () => {
        const r = await pings(10)
        rounds.push(r.received)
        return r.received >= 9
      },
      60_000,
      500,
    ).catch(() => false)
    t.ok(
      back,
      `and all is back after --clear (${((Date.now() - t0) / 1000).toFixed(1)} s; answers per round of ten: ${rounds.join(', ')})`,
    )
  })

  lab.test(t, 'lab:impair refuses what it cannot do, and wrong arguments, with a sentence', sameOnVms, async (t) => {
    t.match(
      await refused(['impair', wan, '--delay', '50']),
      /--delay on network inet: delay needs netem \(sch_netem\), which this machine's kernel does not have; loss works/,
    )
    if (!providerOps(lab.providerOf(tunnel.site)!).ownKernel)
      t.match(
        await refused(['impair', `${tunnel.site}:${wan}`, '--delay', '50']),
        new RegExp(`delay needs netem \\(sch_netem\\), which ${tunnel.site}'s kernel does not have`),
      )
    t.match(
      await refused(['impair', 'mgmt', '--loss', '10']),
      /the management network is how the lab is reached; it is never impaired/,
    )
    t.match(await refused(['impair', 'nowhere', '--loss', '10']), /link "nowhere": no such network/)
    t.match(
      await refused(['impair', wan, '--loss', '150']),
      /--loss must be a number with at most 1 decimal from 0 to 100; got 150/,
    )
    t.match(await refused(['impair', wan]), /say what to do: --loss PERCENT, --delay MS, or --clear/)
    t.equal((await pings(10)).received, 10, 'and the lab is untouched by the refusals')
  })

  // A container shares this machine's kernel, which has no netem (its refusal is tested above).
  lab.test(t, "lab:impair --delay where the host's kernel has netem (a VM)", { gateways: 'vm' }, async (t) => {
    clearAfter(t, `${tunnel.site}:${wan}`)
    // The smallest of ten round trips: netem adds its delay to every packet, so the minimum
    // moves by it, while an emulated guest under load spreads the average by more than
    // 100 ms (seen: an average of 131.8 ms before, 127.5 ms with the delay on).
    const rtt = async () =>
      Number(/= ([\d.]+)\//.exec((await lab.sh(client.name, `ping -q -n -c 10 -i 0.2 -W 2 ${proxyAddr}`)).stdout)?.[1])
    const before = await rtt()
    await cli('impair', `${tunnel.site}:${wan}`, '--delay', '100')
    const delayed = await rtt()
    await cli('impair', `${tunnel.site}:${wan}`, '--clear')
    t.ok(
      delayed >= before + 90,
      `100 ms more on the site's uplink: ${before.toFixed(1)} ms, then ${delayed.toFixed(1)} ms (the fastest of ten)`,
    )
    t.ok((await rtt()) < before + 50, 'and back after --clear')
  })

  t.test("lab:capture: the tunnel on the wire, printed; a host's side written as pcap", async (t) => {
    const printed = cli('capture', wan, '--filter', 'esp or udp port 4500', '--count', '5', '--seconds', '20')
    await pings(10)
    const out = await printed
    const lines = out.stdout.trim().split('\n')
    t.equal(lines.length, 5, 'five packets printed')
    t.ok(
      lines.every(
        (l) => / (ESP|UDP-encap|UDP)|: ESP|isakmp-nat-keep-alive|NONESP|udp/i.test(l) && !l.includes(proxyAddr),
      ),
      `ESP between the gateways, never the LAN addresses: ${lines[0]}`,
    )
    t.match(out.stderr, /bridge .* on this machine: .*5 packets captured/)
    t.equal(out.stderr.match(/^capturing on /gm)?.length, 1, 'it says once that it is capturing')
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cap-')), 'site.pcap')
    const written = cli(
      'capture',
      `${tunnel.site}:${lab.plan.networks.find((n) => n.kind === 'lan' && lab.plan.hosts.find((h) => h.name === tunnel.site)!.interfaces.some((i) => i.network === n.name))!.name}`,
      '--count',
      '8',
      '--seconds',
      '20',
      '-w',
      file,
    )
    await pings(10)
    await written
    const read = execFileSync('tcpdump', ['-nn', '-r', file], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim()
      .split('\n')
    t.equal(read.length, 8, `a pcap of 8 packets that tcpdump (and Wireshark) reads: ${read[0]}`)
    const px = lab.byRole('proxy')[0].name
    t.match(
      await refused(['capture', `${px}:inet`]),
      new RegExp(`${px} has no interface "inet"; its interfaces are mgmt, cloud`),
    )
    t.match(
      await refused(['capture', wan, '--seconds', '9999']),
      /--seconds must be a whole number from 1 to 600; got 9999/,
    )
  })

  lab.test(t, 'lab:graph: every host and the tunnel, in their live state', sameOnVms, async (t) => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'graph-')), 'lab.svg')
    const out = await cli('graph', '--out', file)
    t.match(out.stdout, /live state from the monitor/)
    const svg = fs.readFileSync(file, 'utf8')
    for (const h of lab.plan.hosts) t.match(svg, `data-host="${h.name}" data-state="up"`, `${h.name} drawn, up`)
    t.match(svg, `data-tunnel="${tunnel.name}" data-state="up"`, 'the tunnel drawn, up')
  })
}
