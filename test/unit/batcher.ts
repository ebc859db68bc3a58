// Natural batching: an idle database gets a write at once; writes that arrive while
// others are in flight go together; each caller gets its own result, and a failed
// batch fails exactly its callers.
import t from 'tap'
import { Batcher } from '../../services/ingest/batcher.js'

t.test('alone: at once; under load: together, each its own answer', async (t) => {
  const flushes: number[][] = []
  const release: (() => void)[] = []
  const b = new Batcher<number, string>(
    (items) => {
      flushes.push(items)
      return new Promise((resolve) => release.push(() => resolve(items.map((i) => `r${i}`))))
    },
    { maxBatch: 3, maxInFlight: 1 },
  )
  const first = b.submit(1)
  t.same(flushes, [[1]], 'the first write goes at once, alone')
  const rest = [2, 3, 4, 5].map((i) => b.submit(i))
  t.same(flushes.length, 1, 'the others wait while one is in flight')
  release.shift()!()
  t.equal(await first, 'r1')
  await new Promise((r) => setImmediate(r))
  t.same(flushes[1], [2, 3, 4], 'then go together, up to maxBatch')
  release.shift()!()
  await new Promise((r) => setImmediate(r))
  t.same(flushes[2], [5])
  release.shift()!()
  t.same(await Promise.all(rest), ['r2', 'r3', 'r4', 'r5'], 'each caller gets its own result')
  t.same([b.batches, b.items], [3, 5])
})

t.test('a failed batch fails its callers, and the next batch goes on', async (t) => {
  let n = 0
  const b = new Batcher<number, number>(
    async (items) => {
      if (n++ === 0) throw new Error('connection lost')
      return items.map((i) => i * 10)
    },
    { maxBatch: 10, maxInFlight: 2 },
  )
  await t.rejects(b.submit(1), /connection lost/)
  t.equal(await b.submit(2), 20)
  await t.rejects(
    new Batcher<number, number>(async () => [], { maxBatch: 10, maxInFlight: 1 }).submit(1),
    /0 results for 1 items/,
  )
  t.throws(() => new Batcher(async () => [], { maxBatch: 0, maxInFlight: 1 }), /at least 1/)
})
