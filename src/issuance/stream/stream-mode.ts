import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'
import { writeAndSettle, writeIssued } from '../core/decisions.ts'
import type { ClosableMode, IssuanceWorker } from '../core/mode.ts'
import { type RedisFirstSpec, redisFirstMode } from '../core/redis-first.ts'
import { DEFAULT_DRAIN_OPTIONS, type DrainOptions, StreamDrainer } from './stream-drainer.ts'
import { STREAM_GROUPS, streamPending } from './stream-entries.ts'

/**
 * Admission shared by the `stream` and `kafka` modes: one Lua script, one round trip. The user learns at
 * once whether they won a slot; the request itself travels on through the coupon's Redis stream, drained by
 * the mode's consumer group (`group`).
 */
export function streamAdmission(
  ctx: IssuanceContext,
  mode: 'stream' | 'kafka',
  group: string,
): RedisFirstSpec {
  const states = new CouponStates(ctx)
  return {
    mode,
    states,
    admit: (state, userId) => state.admitToStream(userId),
    admittedStatus: 'ACCEPTED',
    pending: streamPending(states, group),
    undecided: (_coupon, counters, issued) => Math.max(counters.seq - issued, 0),
  }
}

/** `stream` (the default): atomic Redis admission, Redis Streams consumer group writing Postgres in batches. */
export function streamMode(ctx: IssuanceContext): ClosableMode {
  return redisFirstMode(ctx, streamAdmission(ctx, 'stream', STREAM_GROUPS.stream))
}

/**
 * The writers: any number of processes may run them side by side (one consumer group). A batch's decisions
 * and its acknowledgement go to Redis in one call after its transaction committed (entries that are to stay
 * in the stream, deleteOnAck false, are acknowledged by the drainer on its own).
 */
export function streamWriters(ctx: IssuanceContext, options: Partial<DrainOptions> = {}): IssuanceWorker {
  const settles = options.deleteOnAck ?? DEFAULT_DRAIN_OPTIONS.deleteOnAck
  return new StreamDrainer(
    ctx,
    'stream',
    STREAM_GROUPS.stream,
    async (coupon, entries, state) => {
      const requests = entries.map((entry) => ({
        userId: entry.userId,
        position: entry.position,
        requestedAt: new Date(entry.requestedAtMs),
      }))
      if (settles) {
        const ids = entries.map((entry) => entry.id)
        await writeAndSettle(ctx, state, coupon, requests, { group: STREAM_GROUPS.stream, ids })
      } else {
        await writeIssued(ctx, state, coupon, requests)
      }
    },
    { ...options, sinkAcknowledges: settles },
  )
}
