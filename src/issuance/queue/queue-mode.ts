import type { IssuanceContext } from '../context.ts'
import { rebuildCouponState, stockOf } from '../coupon-state.ts'
import type { IssuanceMode } from '../mode.ts'
import { admitToQueue, queueStats, queueStatus } from './queue-admission.ts'
import { QueueScheduler, type QueueSchedulerOptions } from './queue-scheduler.ts'

/** `queue`: the seed's async design. Requests wait in a Redis sorted set; a cron scheduler issues them. */
export function queueMode(ctx: IssuanceContext): IssuanceMode {
  return {
    mode: 'queue',
    soldOutIsFinal: true,
    prepare: (coupon) => rebuildCouponState(ctx, coupon),
    request: (coupon, userId) => admitToQueue(ctx, coupon, userId),
    status: (coupon, userId) => queueStatus(ctx, coupon, userId),
    stats: (coupon) => queueStats(ctx, coupon),
    remaining: (coupon) => stockOf(ctx, coupon),
  }
}

/** The scheduler (`QUEUE_DRAIN_CRON`); any number of processes may run it. Throws on an invalid pattern. */
export function queueScheduler(ctx: IssuanceContext, options: QueueSchedulerOptions): QueueScheduler {
  return new QueueScheduler(ctx, options)
}
