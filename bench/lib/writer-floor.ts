/**
 * The writer's floor on this machine: the two steps every row of the `stream` writer must take, each measured
 * alone with nothing of ours around it.
 * - Postgres: the writers' own insert (`issueFreshAlone`, the statement a fresh batch is written with) on one
 *   connection, batch after batch, into a coupon of the run's schema. A coupon's batches queue on its row
 *   lock, so this is also the most one coupon's rows can be written at by Postgres alone.
 * - Redis: a stream of entries as the admission script writes them, read by a consumer group and
 *   acknowledged and trimmed in the writers' batches (`XREADGROUP`, then `ackAndTrim-1.lua`).
 * Whatever a writer adds on top (parsing, the decisions in Redis, the wake-ups) is its own cost; these two are
 * what any writer keeping the stream and the table would pay.
 */
import { existsSync } from 'node:fs'
import type { Redis } from 'ioredis'
import { DEFAULT_DRAIN_OPTIONS } from '../../src/issuance/stream/stream-drainer.ts'
import {
  acknowledgeAndTrim,
  ensureGroup,
  readGroupEntries,
  streamEntryFields,
} from '../../src/issuance/stream/stream-entries.ts'
import { createPool } from '../../src/storage/postgres.ts'
import { type IssueRequest, issueFreshAlone } from '../../src/storage/user-coupons.ts'
import { CpuMeter } from './cpu.ts'

export interface WriterFloor {
  rows: number
  batchSize: number
  /** The insert alone: rows per second of wall time, and the backend's CPU per row. */
  postgres: { rowsPerSecond: number; microsPerRow: number }
  /** Read, acknowledge and trim alone: the Redis server's CPU per row (absent without its process id). */
  redis?: { rowsPerSecond: number; microsPerRow: number }
}

export interface WriterFloorSetup {
  databaseUrl: string
  schema: string
  /** A coupon of the schema with stock for `rows` more rows; they are written to it. */
  couponId: number
  rows: number
  redis: Redis
  /** The Redis server's process id (a Redis of the run's own), to read its CPU. */
  redisPid?: number
  /** Prefix of the stream key and of the user ids (the run's own). */
  prefix: string
}

const GROUP = 'floor'

/** Wall time and one process's CPU per row over `body`. */
async function timed(pid: number, rows: number, body: () => Promise<void>) {
  const meter = new CpuMeter(() => ({ measured: [pid] }))
  const startedAt = performance.now()
  await body()
  const seconds = (performance.now() - startedAt) / 1000
  const cpu = meter.stop()
  return {
    rowsPerSecond: rows / seconds,
    microsPerRow: ((cpu.roles.measured ?? 0) * cpu.seconds * 1e6) / rows,
  }
}

export async function measureWriterFloor(setup: WriterFloorSetup): Promise<WriterFloor> {
  const { rows, prefix } = setup
  const batchSize = DEFAULT_DRAIN_OPTIONS.batchSize
  const batches: IssueRequest[][] = []
  const startMs = Date.now()
  for (let first = 0; first < rows; first += batchSize) {
    const batch: IssueRequest[] = []
    for (let n = first; n < Math.min(first + batchSize, rows); n++)
      batch.push({ userId: `${prefix}floor-${n}`, position: n + 1, requestedAt: new Date(startMs + n) })
    batches.push(batch)
  }

  const db = createPool({
    databaseUrl: setup.databaseUrl,
    schema: setup.schema,
    max: 1,
    applicationName: 'coupon-rush-bench-floor',
  })
  let postgres: WriterFloor['postgres']
  try {
    const pid = (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid
    // Its CPU is read from /proc: a Postgres on another machine cannot be measured from here.
    if (pid === undefined || !existsSync(`/proc/${pid}`))
      throw new Error('the Postgres backend is not a process of this machine')
    postgres = await timed(pid, rows, async () => {
      for (const batch of batches) {
        const written = await issueFreshAlone(db, setup.couponId, batch)
        if (written === undefined) throw new Error('writer floor: a fresh batch was refused')
      }
    })
  } finally {
    await db.end()
  }

  let redis: WriterFloor['redis']
  if (setup.redisPid !== undefined && existsSync(`/proc/${setup.redisPid}`)) {
    const stream = `${prefix}floor:stream`
    try {
      for (const batch of batches) {
        const pipeline = setup.redis.pipeline()
        for (const { userId, position, requestedAt } of batch)
          pipeline.xadd(stream, '*', ...streamEntryFields(userId, position, requestedAt.getTime()))
        await pipeline.exec()
      }
      await ensureGroup(setup.redis, stream, GROUP)
      redis = await timed(setup.redisPid, rows, async () => {
        for (;;) {
          const reply = await setup.redis.xreadgroup(
            'GROUP',
            GROUP,
            'floor',
            'COUNT',
            batchSize,
            'STREAMS',
            stream,
            '>',
          )
          const ids = readGroupEntries(reply).map((entry) => entry.id)
          if (ids.length === 0) break
          await acknowledgeAndTrim(setup.redis, stream, GROUP, ids)
        }
      })
    } finally {
      await setup.redis.del(stream)
    }
  }
  return { rows, batchSize, postgres, ...(redis === undefined ? {} : { redis }) }
}
