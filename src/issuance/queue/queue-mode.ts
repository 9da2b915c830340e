import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'
import type { ClosableMode } from '../core/mode.ts'
import { redisFirstMode } from '../core/redis-first.ts'
import { queuePending } from './queue-drain.ts'
import { QueueScheduler, type QueueSchedulerOptions } from './queue-scheduler.ts'

/**
 * `queue`: the first asynchronous design. One Lua script puts the user on the coupon's waiting queue (scored
 * by a Redis-side sequence) unless they already requested or the stock is gone; a cron scheduler issues later.
 */
export function queueMode(ctx: IssuanceContext): ClosableMode {
  const states = new CouponStates(ctx)
  return redisFirstMode(ctx, {
    mode: 'queue',
    states,
    admit: (state, userId) => state.admitToQueue(userId),
    admittedStatus: 'PENDING',
    pending: queuePending(states),
    undecided: (coupon) => ctx.redis.zcard(states.of(coupon.id).keys.queue),
  })
}

/** The scheduler (`QUEUE_DRAIN_CRON`); any number of processes may run it. Throws on an invalid pattern. */
export function queueScheduler(ctx: IssuanceContext, options: QueueSchedulerOptions): QueueScheduler {
  return new QueueScheduler(ctx, options)
}
