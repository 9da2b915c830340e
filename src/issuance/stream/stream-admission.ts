import type { Coupon } from '../../domain/coupon.ts'
import { couponKeys } from '../../redis/keys.ts'
import { issuedCount } from '../../storage/coupons.ts'
import { admitByScript, recordedIssuance } from '../admission.ts'
import type { IssuanceContext } from '../context.ts'
import { readState } from '../coupon-state.ts'
import type { CouponStats, IssuanceAnswer } from '../mode.ts'

/**
 * Admission shared by the `stream` and `kafka` modes: one Lua script, one round trip. The user learns at
 * once whether they won a slot; the request itself travels on through the coupon's Redis stream.
 */
export function admitToStream(ctx: IssuanceContext, coupon: Coupon, userId: string): Promise<IssuanceAnswer> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  return admitByScript(ctx, coupon, userId, {
    script: 'admitStream',
    keys: [keys.state, keys.users, keys.stream],
    status: 'ACCEPTED',
  })
}

export const streamStatus = recordedIssuance

export async function streamStats(ctx: IssuanceContext, coupon: Coupon): Promise<CouponStats> {
  const [state, issued] = await Promise.all([readState(ctx, coupon.id), issuedCount(ctx.db, coupon.id)])
  const remaining = state.loaded ? state.stock : coupon.quantity - issued
  return {
    requested: state.seq + state.soldOut,
    accepted: state.seq,
    pending: Math.max(state.seq - issued, 0),
    issued,
    soldOut: state.soldOut,
    remaining,
  }
}
