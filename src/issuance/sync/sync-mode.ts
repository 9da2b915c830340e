import type { Coupon, Issuance } from '../../domain/coupon.ts'
import { issuedCount } from '../../storage/coupons.ts'
import { inTransaction } from '../../storage/postgres.ts'
import { type IssuedOne, issuanceOfRow, issueOne } from '../../storage/sync-issue.ts'
import { findUserCouponOf } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from '../context.ts'
import {
  countSyncRequest,
  ensureLoaded,
  NOTHING_PENDING,
  readCounters,
  rebuildCouponState,
  recordDecisions,
} from '../coupon-store.ts'
import { type CouponStats, type IssuanceMode, type RequestOutcome, SOLD_OUT } from '../mode.ts'
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

  async function request(coupon: Coupon, userId: string): Promise<RequestOutcome> {
    const requestedAt = new Date()
    // Redis lost the coupon: rebuild it first, so its records and counters stay whole.
    await ensureLoaded(ctx, coupon, NOTHING_PENDING)
    return lock.withLock(coupon.id, async (grant) => {
      ctx.logger.debug({ couponId: coupon.id, userId, arrival: grant.arrival }, 'sync: fair lock held')
      options.onLockGranted?.({ couponId: coupon.id, userId, arrival: grant.arrival })
      const result = await inTransaction(ctx.db, (client) => issueOne(client, coupon.id, userId, requestedAt))
      if (result.kind === 'alreadyRequested') return result
      if (result.kind === 'soldOut') {
        await countSyncRequest(ctx, coupon.id, { outcome: 'soldOut' }).catch((error: unknown) =>
          ctx.logger.warn({ err: error, couponId: coupon.id }, 'sync: counting a sold-out request failed'),
        )
        return SOLD_OUT
      }
      const { issued } = result
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
      return { kind: 'admitted', httpStatus: 201, issuance }
    })
  }

  /**
   * Mirrors a committed issue into Redis (user record, counters, SSE notice) while still holding the lock.
   * Best effort: the row is committed, so the user did get the coupon and is answered 201; a failure here
   * only leaves stats behind until the state is rebuilt.
   */
  async function recordIssued(couponId: number, userId: string, issued: IssuedOne) {
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
        countSyncRequest(ctx, couponId, {
          outcome: 'issued',
          stock: issued.quantity - issued.position,
          position: issued.position,
        }),
      ])
    } catch (error) {
      ctx.logger.warn(
        { err: error, couponId, userId },
        'sync: issued in Postgres, but recording it in Redis failed',
      )
    }
  }

  async function stats(coupon: Coupon): Promise<CouponStats> {
    const [counters, issued] = await Promise.all([
      readCounters(ctx, coupon.id),
      issuedCount(ctx.db, coupon.id),
    ])
    return {
      // Never below what Postgres proves, even if Redis lost its counters.
      requested: Math.max(counters.requested, issued + counters.soldOut),
      accepted: issued,
      pending: 0,
      issued,
      soldOut: counters.soldOut,
      remaining: Math.max(coupon.quantity - issued, 0),
    }
  }

  return {
    mode: 'sync',
    recordsEveryRequest: false,
    prepare: (coupon) => rebuildCouponState(ctx, coupon, NOTHING_PENDING),
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
