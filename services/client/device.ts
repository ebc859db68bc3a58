// The simulated devices: each has an id, its own key, and a sensor whose value
// drifts slowly (a temperature, say), so that stored values can be checked.
import { encodeReading, type Reading } from '../lib/reading.js'

export interface Device {
  id: string
  key: Buffer
}

/** The reading a device takes at a given sequence number: deterministic, so a test can recompute it. */
export function takeReading(
  device: string,
  seq: number,
  now = new Date(),
): { device: string; seq: number; body: string; reading: Reading } {
  let h = 0
  for (const c of device) h = (h * 31 + c.charCodeAt(0)) >>> 0
  const value = Math.round((20 + (h % 50) / 10 + 3 * Math.sin(seq / 20)) * 1000) / 1000
  const reading = { device, seq, time: now.toISOString(), value }
  return { device, seq, body: encodeReading(reading), reading }
}
