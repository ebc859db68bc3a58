// Natural batching (group commit): a write goes to the database at once when the
// database is idle; while writes are in flight, the next ones queue and go together
// in one statement and one commit. No timer, so no latency is added at low load, and
// under load each commit (and its WAL fsync) carries many readings. Each caller still
// gets its own answer, only after the commit that holds its reading.
export interface BatcherOptions {
  maxBatch: number
  maxInFlight: number
}

interface Waiting<T, R> {
  item: T
  resolve: (r: R) => void
  reject: (e: unknown) => void
}

export class Batcher<T, R> {
  private queue: Waiting<T, R>[] = []
  private inFlight = 0
  batches = 0
  items = 0

  constructor(
    private flush: (items: T[]) => Promise<R[]>,
    private opts: BatcherOptions,
  ) {
    if (!(opts.maxBatch >= 1 && opts.maxInFlight >= 1))
      throw new Error('batcher: maxBatch and maxInFlight must be at least 1')
  }

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject })
      this.pump()
    })
  }

  private pump() {
    while (this.inFlight < this.opts.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch)
      this.inFlight++
      this.batches++
      this.items += batch.length
      this.flush(batch.map((w) => w.item))
        .then((results) => {
          if (results.length !== batch.length)
            throw new Error(`batcher: ${results.length} results for ${batch.length} items`)
          batch.forEach((w, i) => w.resolve(results[i]))
        })
        .catch((e) => batch.forEach((w) => w.reject(e)))
        .finally(() => {
          this.inFlight--
          this.pump()
        })
    }
  }
}
