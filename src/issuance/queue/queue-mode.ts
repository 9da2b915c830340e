import { couponKeys } from '../../redis/keys.ts'
import type { IssuanceContext } from '../context.ts'
import { admitToQueue } from '../coupon-store.ts'
import type { IssuanceMode } from '../mode.ts'
import { redisFirstMode } from '../redis-first.ts'
import { queuePending } from './queue-drain.ts'
import { QueueScheduler, type QueueSchedulerOptions } from './queue-scheduler.ts'

/**
 * `queue`: the seed's async design. One Lua script puts the user on the coupon's waiting queue (scored by a
 * Redis-side sequence) unless they already requested or the stock is gone; a cron scheduler issues later.
 */
export function queueMode(ctx: IssuanceContext): IssuanceMode & { close(): Promise<void> } {
  return redisFirstMode(ctx, {
    mode: 'queue',
    admit: admitToQueue,
    admittedStatus: 'PENDING',
    pending: queuePending(ctx),
    undecided: (coupon) => ctx.redis.zcard(couponKeys(ctx.redisPrefix, coupon.id).queue),
  })
}

/** The scheduler (`QUEUE_DRAIN_CRON`); any number of processes may run it. Throws on an invalid pattern. */
export function queueScheduler(ctx: IssuanceContext, options: QueueSchedulerOptions): QueueScheduler {
  return new QueueScheduler(ctx, options)
}
