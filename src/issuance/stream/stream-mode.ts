import type { Coupon } from '../../domain/coupon.ts'
import type { IssuanceContext } from '../context.ts'
import { rebuildCouponState, STREAM_GROUPS, stockOf } from '../coupon-state.ts'
import { writeIssued } from '../decisions.ts'
import type { IssuanceMode, IssuanceWorker } from '../mode.ts'
import { admitToStream, streamStats, streamStatus } from './stream-admission.ts'
import { type DrainOptions, StreamDrainer } from './stream-drainer.ts'

/** `stream` (the default): atomic Redis admission, Redis Streams consumer group writing Postgres in batches. */
export function streamMode(ctx: IssuanceContext): IssuanceMode {
  return {
    mode: 'stream',
    soldOutIsFinal: true,
    prepare: (coupon) => rebuildCouponState(ctx, coupon),
    request: (coupon, userId) => admitToStream(ctx, coupon, userId),
    status: (coupon, userId) => streamStatus(ctx, coupon, userId),
    stats: (coupon) => streamStats(ctx, coupon),
    remaining: (coupon) => stockOf(ctx, coupon),
  }
}

/** The writers: any number of processes may run them side by side (one consumer group). */
export function streamWriters(ctx: IssuanceContext, options: Partial<DrainOptions> = {}): IssuanceWorker {
  return new StreamDrainer(
    ctx,
    'stream',
    STREAM_GROUPS.stream,
    async (coupon: Coupon, entries) => {
      await writeIssued(
        ctx,
        coupon,
        entries.map((entry) => ({
          userId: entry.userId,
          position: entry.position,
          requestedAt: new Date(entry.requestedAtMs),
        })),
      )
    },
    options,
  )
}
