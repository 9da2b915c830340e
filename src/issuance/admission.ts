import type { Coupon, Issuance } from '../domain/coupon.ts'
import { CouponNotLoadedError, runScriptBatched, type ScriptName, scriptResult } from '../redis/scripts.ts'
import type { IssuanceContext } from './context.ts'
import { isLoaded, readRecord, rebuildCouponState } from './coupon-state.ts'
import type { IssuanceAnswer } from './mode.ts'
import { decodeRecord, toIssuance } from './records.ts'

/**
 * Runs an admission script (`admitStream`, `admitQueue`): one round trip that answers `{position, ms}` or a
 * negative code. If Redis lost the coupon, rebuilds it from Postgres and tries once more.
 */
export async function admitByScript(
  ctx: IssuanceContext,
  coupon: Coupon,
  userId: string,
  admission: {
    script: Extract<ScriptName, 'admitStream' | 'admitQueue'>
    keys: string[]
    status: 'ACCEPTED' | 'PENDING'
  },
): Promise<IssuanceAnswer> {
  for (let attempt = 0; ; attempt++) {
    try {
      const reply = await runScriptBatched(ctx.redis, admission.script, admission.keys, [userId])
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
          status: admission.status,
          position,
          requestedAt: new Date(Number(rest[0])).toISOString(),
        },
      }
    } catch (error) {
      if (!(error instanceof CouponNotLoadedError) || attempt > 0) throw error
      await rebuildCouponState(ctx, coupon)
    }
  }
}

/** The user's record in Redis; if Redis lost the coupon, rebuilt first so an issued user never reads NOT_REQUESTED. */
export async function recordedIssuance(
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
