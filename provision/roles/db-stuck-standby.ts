// A standby that Patroni 3.0.2 (Debian 12) leaves starting forever, and what gets it out.
//
// Patroni decides whether a returning member must be rewound before it starts
// PostgreSQL, by asking the leader for its timeline history. When that question fails
// (the leader not reachable yet: "No route to host" in the first second after a cut-off
// member's links came back, CI of 7 Dec 2026), Patroni starts PostgreSQL as a standby
// anyway. If the member's recovery point lies past the fork of the leader's timeline,
// PostgreSQL can never become consistent: it says "new timeline N forked off current
// database system timeline M before current recovery point" every 5 s and accepts no
// connection. Patroni 3.0.2 asks again only once PostgreSQL accepts connections
// (ha.py: `if not self.state_handler.is_starting()`), so it never does: in that CI run
// database-1 stayed so for 55 minutes, and every provisioning of it waited in vain.
// Patroni fixed it in June 2026 (patroni/patroni#3650, #3654: fall back to
// pg_controldata while PostgreSQL starts), long after Debian 12's 3.0.2.
//
// A restart of Patroni is the remedy: stopping it stops PostgreSQL ("shut down in
// recovery"), and on its start Patroni asks the leader again, reading the member's
// position from pg_control: it rewinds the member, or clones it again when the rewind
// fails (remove_data_directory_on_rewind_failure, patroni.yml).

export interface PatroniState {
  role?: string
  state?: string
}

/** PostgreSQL's line saying its recovery point is past the fork of the timeline it must follow. */
export const FORKED_PAST_RECOVERY_POINT =
  /new timeline \d+ forked off current database system timeline \d+ before current recovery point/

/**
 * The lines of PostgreSQL's log that tell where a start stands: the server starting,
 * becoming consistent (it accepts connections), or refusing the leader's timeline.
 * What grep -E asks of the log on the host.
 */
export const START_MARKERS =
  'starting PostgreSQL|consistent recovery state reached|database system is ready to accept|forked off current database system timeline'

/** Whether Patroni says a replica still starting: the only state a stuck member is in (and worth reading its log for). */
export const startingReplica = (patroni: PatroniState | undefined) =>
  patroni?.role === 'replica' && patroni.state === 'starting'

/**
 * Why this member is stuck as Patroni 3.0.2 leaves it, or undefined: Patroni says a
 * replica still starting, and since PostgreSQL's last start (the log's lines matching
 * START_MARKERS, in order) it refused the leader's timeline and never became
 * consistent. A refusal after it became consistent is a former primary's ordinary way
 * back (Patroni then sees it running and rewinds it itself), and one of an earlier start
 * is history: neither is this.
 */
export function stuckOnForkedTimeline(patroni: PatroniState | undefined, markers: string): string | undefined {
  if (!startingReplica(patroni)) return undefined
  const lines = markers.split('\n').map((l) => l.trim())
  const start = lines.map((l) => /starting PostgreSQL/.test(l)).lastIndexOf(true)
  const sinceStart = lines.slice(start + 1)
  if (sinceStart.some((l) => /consistent recovery state reached|ready to accept/.test(l))) return undefined
  return sinceStart.filter((l) => FORKED_PAST_RECOVERY_POINT.test(l)).at(-1)
}

/** The shell command printing the start markers of PostgreSQL's log since its last start (the log holds every start: no rotation). */
export const startMarkersSince = (log: string) =>
  `grep -E '${START_MARKERS}' ${log} | tac | sed '/starting PostgreSQL/q' | tac`
