import type { Coupon } from '../../domain/coupon.ts'
import { couponKeys } from '../../redis/keys.ts'
import { issuedCount } from '../../storage/coupons.ts'
import { admitByScript, recordedIssuance } from '../admission.ts'
import type { IssuanceContext } from '../context.ts'
import { readState } from '../coupon-state.ts'
import type { CouponStats, IssuanceAnswer } from '../mode.ts'

/**
 * Admission of the `queue` mode: one Lua script puts the user on the coupon's waiting queue (scored by a
 * Redis-side sequence) unless they already requested or the stock is gone. The scheduler decides later.
 */
export function admitToQueue(ctx: IssuanceContext, coupon: Coupon, userId: string): Promise<IssuanceAnswer> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  return admitByScript(ctx, coupon, userId, {
    script: 'admitQueue',
    keys: [keys.state, keys.users, keys.queue],
    status: 'PENDING',
  })
}

export const queueStatus = recordedIssuance

export async function queueStats(ctx: IssuanceContext, coupon: Coupon): Promise<CouponStats> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  const [state, resolvedSoldOut, pending, issued] = await Promise.all([
    readState(ctx, coupon.id),
    ctx.redis.hget(keys.state, 'resolvedSoldOut'),
    ctx.redis.zcard(keys.queue),
    issuedCount(ctx.db, coupon.id),
  ])
  return {
    requested: state.seq + state.soldOut,
    accepted: state.seq,
    pending,
    issued,
    soldOut: state.soldOut + Number(resolvedSoldOut ?? 0),
    remaining: state.loaded ? state.stock : coupon.quantity - issued,
  }
}
