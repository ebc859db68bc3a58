// A standby Patroni 3.0.2 leaves starting forever is told apart from a member on its
// ordinary way back, by PostgreSQL's own start markers. The lines are database-1's, from
// CI's run of 7 Dec 2026 (the member stuck for 55 minutes).
import t from 'tap'
import { START_MARKERS, stuckOnForkedTimeline } from '../../provision/roles/db-stuck-standby.js'

const start = (pid: number) =>
  `2026-12-07 15:57:01.093 UTC [${pid}] LOG:  starting PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit`
const consistent = '2026-12-07 15:56:53.583 UTC [3705] LOG:  consistent recovery state reached at 0/1DEB6048'
const readOnly = '2026-12-07 15:56:53.583 UTC [3700] LOG:  database system is ready to accept read-only connections'
const forked =
  '2026-12-07 15:57:01.118 UTC [3793] LOG:  new timeline 4 forked off current database system timeline 3 before current recovery point 0/1DEB5FB8'
const starting = { role: 'replica', state: 'starting' }

t.test('stuck: started, refused the fork again and again, never consistent', async (t) => {
  const log = [start(3700), consistent, readOnly, start(3788), forked, forked, forked].join('\n')
  t.equal(stuckOnForkedTimeline(starting, log), forked, "names PostgreSQL's own line")
})

t.test('not stuck: a former primary became consistent, then refused the fork (Patroni rewinds it)', async (t) => {
  t.equal(stuckOnForkedTimeline(starting, [start(3788), consistent, readOnly, forked].join('\n')), undefined)
})

t.test('not stuck: the refusal was an earlier start, this one has said nothing yet', async (t) => {
  t.equal(stuckOnForkedTimeline(starting, [start(3788), forked, start(4000)].join('\n')), undefined)
})

t.test('not stuck unless Patroni says a replica still starting', async (t) => {
  const log = [start(3788), forked].join('\n')
  t.equal(stuckOnForkedTimeline({ role: 'replica', state: 'running' }, log), undefined, 'running')
  t.equal(stuckOnForkedTimeline({ role: 'primary', state: 'starting' }, log), undefined, 'a primary')
  t.equal(stuckOnForkedTimeline({ role: 'replica', state: 'creating replica' }, log), undefined, 'being cloned')
  t.equal(stuckOnForkedTimeline(undefined, log), undefined, 'no answer from Patroni')
  t.equal(stuckOnForkedTimeline(starting, ''), undefined, 'an empty log')
})

t.test("the grep pattern picks exactly the markers the decision reads from PostgreSQL's log", async (t) => {
  const other = [
    '2026-12-07 15:57:01.117 UTC [3794] FATAL:  could not start WAL streaming: ERROR:  replication slot "database_1" does not exist',
    '2026-12-07 15:57:06.143 UTC [3842] LOG:  started streaming WAL from primary at 0/1D000000 on timeline 3',
    '2026-12-07 15:51:52.314 UTC [31380] FATAL:  the database system is starting up',
  ]
  const re = new RegExp(START_MARKERS)
  t.same(
    [start(1), consistent, readOnly, forked, ...other].filter((l) => re.test(l)),
    [start(1), consistent, readOnly, forked],
  )
})
