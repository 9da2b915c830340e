import type { Coupon, Issuance } from '../../domain/coupon.ts'
import { couponKeys } from '../../redis/keys.ts'
import { CouponNotLoadedError, runScript, scriptResult } from '../../redis/scripts.ts'
import { issuedCount } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../context.ts'
import { isLoaded, readRecord, readState, rebuildCouponState } from '../coupon-state.ts'
import type { CouponStats, IssuanceAnswer } from '../mode.ts'
import { decodeRecord, toIssuance } from '../records.ts'

/**
 * Admission of the `queue` mode: one Lua script puts the user on the coupon's waiting queue (scored by a
 * Redis-side sequence) unless they already requested or the stock is gone. The scheduler decides later.
 */
export async function admitToQueue(
  ctx: IssuanceContext,
  coupon: Coupon,
  userId: string,
): Promise<IssuanceAnswer> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  for (let attempt = 0; ; attempt++) {
    try {
      const reply = await runScript(ctx.redis, 'admitQueue', [keys.state, keys.users, keys.queue], [userId])
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
          status: 'PENDING',
          position,
          requestedAt: new Date(Number(rest[0])).toISOString(),
        },
      }
    } catch (error) {
      // Redis lost the coupon: rebuild it from Postgres, then try once more.
      if (!(error instanceof CouponNotLoadedError) || attempt > 0) throw error
      await rebuildCouponState(ctx, coupon)
    }
  }
}

/** The user's record; if Redis lost the coupon, rebuilt first so issued users are not told "never requested". */
export async function queueStatus(
  ctx: IssuanceContext,
  coupon: Coupon,
  userId: string,
): Promise<Issuance | undefined> {
  let record = await readRecord(ctx, coupon.id, userId)
  if (record === undefined && !(await isLoaded(ctx, coupon.id))) {
    await rebuildCouponState(ctx, coupon)
    record = await readRecord(ctx, coupon.id, userId)
  }
  return record && toIssuance(coupon.id, userId, record)
}

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
