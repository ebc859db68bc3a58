// The monitor, as the tests ask it: Prometheus's HTTP API on the management network
// (the port its firewall opens to the provisioning machine), and the wait for an
// alert to fire during a fault and to resolve after it.
import type { Test } from 'tap'
import { query, type Sample } from '../../scripts/lib/watch.js'
import { waitFor, type Lab } from './lab.js'

/** What lab:status asks, asked the same way (a longer wait: the lab may be busy with a fault). */
export async function promQuery(lab: Lab, expr: string): Promise<Sample[]> {
  const base = lab.plan.services.monitor?.url
  if (!base) throw new Error('the topology has no monitor host')
  return query(base, expr, 10_000)
}

const selector = (alert: string, labels: Record<string, string>) =>
  `ALERTS{alertname="${alert}",alertstate="firing"${Object.entries(labels)
    .map(([k, v]) => `,${k}="${v}"`)
    .join('')}}`

/**
 * Wait until the alert (with these labels) is firing, or is no longer firing; the
 * test asserts it happened, with how long it took. Returns the seconds waited.
 */
export async function expectAlert(
  t: Test,
  lab: Lab,
  alert: string,
  labels: Record<string, string>,
  want: 'firing' | 'resolved',
  timeoutMs = 90_000,
): Promise<number> {
  const t0 = Date.now()
  const what = `${alert}${
    Object.keys(labels).length
      ? `{${Object.entries(labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}}`
      : ''
  }`
  try {
    await waitFor(
      `the monitor's alert ${what} ${want}`,
      async () => (await promQuery(lab, selector(alert, labels))).length > 0 === (want === 'firing'),
      timeoutMs,
      2000,
    )
  } catch {
    t.fail(`the monitor's alert ${what} did not ${want === 'firing' ? 'fire' : 'resolve'} within ${timeoutMs / 1000} s`)
    return NaN
  }
  const s = (Date.now() - t0) / 1000
  t.pass(`the monitor's alert ${what} ${want === 'firing' ? 'fires' : 'resolves'} (${s.toFixed(0)} s)`)
  return s
}

/**
 * expectAlert where the topology has a monitor; nothing where it has none (the fault
 * scenarios run on topologies without one too).
 */
export function alertsOf(lab: Lab) {
  const watched = !!lab.plan.services.monitor
  return async (
    t: Test,
    alert: string,
    labels: Record<string, string>,
    want: 'firing' | 'resolved',
    timeoutMs?: number,
  ) => {
    if (watched) await expectAlert(t, lab, alert, labels, want, timeoutMs)
  }
}
