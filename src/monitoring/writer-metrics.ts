/**
 * The stream writers' batching, process-wide (the writers of every coupon of a process share them): how many
 * rows each batch carried and how long a writer lingered before reading again to let a batch fill. The
 * metrics plugin registers them on each app's registry, so /metrics of a process running the writers shows
 * them.
 */
import { Histogram } from 'prom-client'

export const writerBatchRows = new Histogram({
  name: 'coupon_writer_batch_rows',
  help: 'Entries per batch a stream writer read and wrote (full batches: STREAM_BATCH_SIZE)',
  buckets: [1, 10, 50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000],
  registers: [],
})

export const writerLingerSeconds = new Histogram({
  name: 'coupon_writer_linger_seconds',
  help: 'Time a stream writer waited before reading again after a partial batch, to let the next one fill',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
  registers: [],
})
