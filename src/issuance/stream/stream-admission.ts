import type { Coupon } from '../../domain/coupon.ts'
import { couponKeys } from '../../redis/keys.ts'
import { CouponNotLoadedError, runScript, scriptResult } from '../../redis/scripts.ts'
import { issuedCount } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../context.ts'
import { isLoaded, readRecord, readState, rebuildCouponState } from '../coupon-state.ts'
import type { CouponStats, IssuanceAnswer } from '../mode.ts'
import { decodeRecord, toIssuance } from '../records.ts'

/**
 * Admission shared by the `stream` and `kafka` modes: one Lua script, one round trip. The user learns at
 * once whether they won a slot; the request itself travels on through the coupon's Redis stream.
 */
export async function admitToStream(
  ctx: IssuanceContext,
  coupon: Coupon,
  userId: string,
): Promise<IssuanceAnswer> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  for (let attempt = 0; ; attempt++) {
    try {
      const reply = await runScript(ctx.redis, 'admitStream', [keys.state, keys.users, keys.stream], [userId])
      const { code: position, rest } = scriptResult(coupon.id, reply, (failure, rest) =>
        failure === 'ALREADY_REQUESTED'
          ? { issuance: toIssuance(coupon.id, userId, decodeRecord(String(rest[0]))) }
          : {},
      )
      return {
        httpStatus: 202,
        issuance: {
          couponId: coupon.id,
          userId,
          status: 'ACCEPTED',
          position,
          requestedAt: new Date(Number(rest[0])).toISOString(),
        },
      }
    } catch (error) {
      // Redis lost the coupon: rebuild it from Postgres and the stream, then try once more.
      if (!(error instanceof CouponNotLoadedError) || attempt > 0) throw error
      await rebuildCouponState(ctx, coupon)
    }
  }
}

export async function streamStatus(ctx: IssuanceContext, coupon: Coupon, userId: string) {
  let record = await readRecord(ctx, coupon.id, userId)
  // No record may mean Redis lost the coupon: rebuild first, so an issued user never reads NOT_REQUESTED.
  if (record === undefined && !(await isLoaded(ctx, coupon.id))) {
    await rebuildCouponState(ctx, coupon)
    record = await readRecord(ctx, coupon.id, userId)
  }
  return record && toIssuance(coupon.id, userId, record)
}

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
