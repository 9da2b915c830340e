import type { Coupon, Issuance } from '../../domain/coupon.ts'
import { AppError } from '../../domain/errors.ts'
import { couponKeys } from '../../redis/keys.ts'
import { issuedCount } from '../../storage/coupons.ts'
import { inTransaction } from '../../storage/postgres.ts'
import { type IssuedOne, issuanceOfRow, issueOne } from '../../storage/sync-issue.ts'
import { findUserCouponOf } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from '../context.ts'
import { ensureLoaded, rebuildCouponState } from '../coupon-state.ts'
import { recordDecisions } from '../decisions.ts'
import type { CouponStats, IssuanceAnswer, IssuanceMode } from '../mode.ts'
import { FairLock, type FairLockOptions, LockReleaseNotifier } from './fair-lock.ts'

export interface SyncModeOptions extends FairLockOptions {
  /** Called once a request holds the lock, with its arrival number on the coupon's line (tests prove FCFS with it). */
  onLockGranted?: (grant: { couponId: number; userId: string; arrival: number }) => void
}

/**
 * `sync`, the original design: a Redis fair lock per coupon, then one Postgres transaction that validates the
 * coupon, inserts the user's row and deducts the stock. Postgres is the truth; Redis keeps the users' records
 * and counters for stats and SSE.
 */
export function syncMode(
  ctx: IssuanceContext,
  options: SyncModeOptions,
): IssuanceMode & { close(): Promise<void> } {
  const notifier = new LockReleaseNotifier(ctx)
  const lock = new FairLock(ctx, notifier, options)

  async function request(coupon: Coupon, userId: string): Promise<IssuanceAnswer> {
    const requestedAt = new Date()
    // Redis lost the coupon: rebuild it first, so its records and counters stay whole.
    await ensureLoaded(ctx, coupon)
    return lock.withLock(coupon.id, async (grant) => {
      ctx.logger.debug({ couponId: coupon.id, userId, arrival: grant.arrival }, 'sync: fair lock held')
      options.onLockGranted?.({ couponId: coupon.id, userId, arrival: grant.arrival })
      let issued: IssuedOne
      try {
        issued = await inTransaction(ctx.db, (client) => issueOne(client, coupon.id, userId, requestedAt))
      } catch (error) {
        if (error instanceof AppError && error.code === 'SOLD_OUT') await countSoldOut(coupon.id)
        throw error
      }
      const issuance: Issuance = {
        couponId: coupon.id,
        userId,
        status: 'ISSUED',
        position: issued.position,
        userCouponId: issued.id,
        requestedAt: issued.requestedAt.toISOString(),
        decidedAt: issued.issuedAt.toISOString(),
      }
      await recordIssued(coupon.id, userId, issued)
      return { httpStatus: 201, issuance }
    })
  }

  /**
   * Mirrors a committed issue into Redis (user record, counters, SSE notice) while still holding the lock.
   * Best effort: the row is committed, so the user did get the coupon and is answered 201; a failure here
   * only leaves stats behind until the state is rebuilt.
   */
  async function recordIssued(couponId: number, userId: string, issued: IssuedOne) {
    const { state } = couponKeys(ctx.redisPrefix, couponId)
    const record = {
      status: 'ISSUED',
      position: issued.position,
      requestedAtMs: issued.requestedAt.getTime(),
      userCouponId: issued.id,
      decidedAtMs: issued.issuedAt.getTime(),
    } as const
    try {
      await Promise.all([
        recordDecisions(ctx, couponId, [[userId, record]]),
        // Absolute values from Postgres (under the lock), so they converge even after a lost update.
        ctx.redis
          .multi()
          .hincrby(state, 'requested', 1)
          .hset(state, 'stock', issued.quantity - issued.position, 'seq', issued.position)
          .exec(),
      ])
    } catch (error) {
      ctx.logger.warn(
        { err: error, couponId, userId },
        'sync: issued in Postgres, but recording it in Redis failed',
      )
    }
  }

  async function countSoldOut(couponId: number): Promise<void> {
    const { state } = couponKeys(ctx.redisPrefix, couponId)
    await ctx.redis
      .multi()
      .hincrby(state, 'requested', 1)
      .hincrby(state, 'soldOut', 1)
      .exec()
      .catch((error: unknown) =>
        ctx.logger.warn({ err: error, couponId }, 'sync: counting a sold-out request failed'),
      )
  }

  async function stats(coupon: Coupon): Promise<CouponStats> {
    const { state } = couponKeys(ctx.redisPrefix, coupon.id)
    const [[requested, soldOut], issued] = await Promise.all([
      ctx.redis.hmget(state, 'requested', 'soldOut'),
      issuedCount(ctx.db, coupon.id),
    ])
    const soldOutCount = Number(soldOut ?? 0)
    return {
      // Never below what Postgres proves, even if Redis lost its counters.
      requested: Math.max(Number(requested ?? 0), issued + soldOutCount),
      accepted: issued,
      pending: 0,
      issued,
      soldOut: soldOutCount,
      remaining: Math.max(coupon.quantity - issued, 0),
    }
  }

  return {
    mode: 'sync',
    soldOutIsFinal: false,
    prepare: (coupon) => rebuildCouponState(ctx, coupon),
    request,
    async status(coupon, userId) {
      const row = await findUserCouponOf(ctx.db, coupon.id, userId)
      return row && issuanceOfRow(row, userId)
    },
    stats,
    async remaining(coupon) {
      return Math.max(coupon.quantity - (await issuedCount(ctx.db, coupon.id)), 0)
    },
    close: () => notifier.close(),
  }
}
