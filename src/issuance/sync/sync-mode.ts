import { type Coupon, type CouponStats, windowRefusal } from '../../domain/coupon.ts'
import { issuedCount } from '../../storage/coupons.ts'
import { inTransaction } from '../../storage/postgres.ts'
import { type IssuedOne, issueOne } from '../../storage/sync-issue.ts'
import { findUserCouponOf } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { type CouponCounters, type CouponState, CouponStates } from '../core/coupon-state.ts'
import { issuanceOfRow, issuedRecord, recordDecisions } from '../core/decisions.ts'
import { type ClosableMode, type RequestOutcome, SOLD_OUT } from '../core/mode.ts'
import { NOTHING_PENDING, StateLoader } from '../core/rebuild.ts'
import { toIssuance } from '../core/record.ts'
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
export function syncMode(ctx: IssuanceContext, options: SyncModeOptions): ClosableMode {
  const states = new CouponStates(ctx)
  const loader = new StateLoader(ctx, states, NOTHING_PENDING)
  const notifier = new LockReleaseNotifier(ctx)
  const lock = new FairLock(ctx, notifier, options)

  async function request(coupon: Coupon, userId: string): Promise<RequestOutcome> {
    const state = states.of(coupon.id)
    // The window is checked on Redis's clock (no process clock decides), whose time is the request's time.
    let window = await state.checkWindow()
    if (window.kind === 'notLoaded') {
      // Redis lost the coupon: rebuild it first, so its records and counters stay whole.
      await loader.ensureLoaded(coupon)
      window = await state.checkWindow()
    }
    if (window.kind === 'notLoaded')
      throw new Error(`coupon ${coupon.id} has no Redis state right after its rebuild`)
    if (window.kind !== 'open') throw windowRefusal(coupon, window.kind)
    const requestedAt = new Date(window.nowMs)
    return lock.withLock(coupon.id, async (grant) => {
      ctx.logger.debug({ couponId: coupon.id, userId, arrival: grant.arrival }, 'sync: fair lock held')
      options.onLockGranted?.({ couponId: coupon.id, userId, arrival: grant.arrival })
      const result = await inTransaction(ctx.db, (client) => issueOne(client, coupon.id, userId, requestedAt))
      if (result.kind === 'alreadyRequested') {
        const { row } = result
        return { kind: 'alreadyRequested', issuance: row && issuanceOfRow(coupon.id, userId, row) }
      }
      if (result.kind === 'soldOut') {
        await state
          .countSyncRequest({ outcome: 'soldOut' })
          .catch((error: unknown) =>
            ctx.logger.warn({ err: error, couponId: coupon.id }, 'sync: counting a sold-out request failed'),
          )
        return SOLD_OUT
      }
      const { issued } = result
      const record = issuedRecord(issued)
      await recordIssued(ctx, state, userId, issued)
      return { kind: 'admitted', httpStatus: 201, issuance: toIssuance(coupon.id, userId, record) }
    })
  }

  return {
    mode: 'sync',
    recordsEveryRequest: false,
    prepare: (coupon) => loader.rebuild(coupon),
    request,
    async status(coupon, userId) {
      const row = await findUserCouponOf(ctx.db, coupon.id, userId)
      return row && issuanceOfRow(coupon.id, userId, row)
    },
    stats: (coupon) => syncStats(ctx, states.of(coupon.id), coupon),
    async remaining(coupon) {
      return Math.max(coupon.quantity - (await issuedCount(ctx.db, coupon.id)), 0)
    },
    close: () => notifier.close(),
  }
}

/**
 * Mirrors a committed issue into Redis (user record, counters, SSE notice) while still holding the lock.
 * Best effort: the row is committed, so the user did get the coupon and is answered 201; a failure here
 * only leaves stats behind until the state is rebuilt.
 */
async function recordIssued(ctx: IssuanceContext, state: CouponState, userId: string, issued: IssuedOne) {
  const { couponId } = state
  try {
    await Promise.all([
      recordDecisions(state, [[userId, issuedRecord(issued)]]),
      state.countSyncRequest({
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

/** The sync mode's counters: Postgres counts the issued, Redis the requests refused. */
async function syncStats(ctx: IssuanceContext, state: CouponState, coupon: Coupon): Promise<CouponStats> {
  const [counters, issued] = await Promise.all([state.readCounters(), issuedCount(ctx.db, coupon.id)])
  return syncStatsOf(coupon, counters, issued)
}

/** A sync coupon's stats from its Redis counters and its issued rows. */
export function syncStatsOf(
  coupon: Coupon,
  counters: Pick<CouponCounters, 'requested' | 'soldOut'>,
  issued: number,
): CouponStats {
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
