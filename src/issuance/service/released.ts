import type { Coupon, CouponStats, Issuance } from '../../domain/coupon.ts'
import { auditRows } from '../../storage/audit.ts'
import { issuedCount } from '../../storage/coupons.ts'
import type { Db } from '../../storage/postgres.ts'
import { finalCounters, findOutcome, outcomeConflicts } from '../../storage/retention.ts'
import { findUserCouponOf } from '../../storage/user-coupons.ts'
import { issuanceOfRow } from '../core/decisions.ts'
import { toIssuance } from '../core/record.ts'
import { redisFirstStats } from '../core/redis-first.ts'
import { syncStatsOf } from '../sync/sync-mode.ts'
import { type CouponAudit, rowInconsistencies } from './audit.ts'

/*
 * The reads of a sale whose Redis state was released (plumbing/sale-release.ts), from Postgres alone, with
 * the answers they had before the release: the record copied at the release if the rows do not tell it, else
 * the user's row; the stats from the counters frozen at the release; the audit from the rows and the copies.
 */

/** The user's issuance of a released sale, or undefined if they never asked. */
export async function releasedStatus(db: Db, coupon: Coupon, userId: string): Promise<Issuance | undefined> {
  const outcome = await findOutcome(db, coupon.id, userId)
  if (outcome !== undefined) {
    const { userId: _user, ...record } = outcome
    return toIssuance(coupon.id, userId, record)
  }
  const row = await findUserCouponOf(db, coupon.id, userId)
  return row && issuanceOfRow(coupon.id, userId, row)
}

/** A released sale's stats: its final Redis counters with its rows, every request decided. */
export async function releasedStats(db: Db, coupon: Coupon): Promise<CouponStats> {
  const [counters, issued] = await Promise.all([finalCounters(db, coupon.id), issuedCount(db, coupon.id)])
  if (counters === undefined) throw new Error(`coupon ${coupon.id} is not released`)
  return coupon.issueMode === 'sync'
    ? syncStatsOf(coupon, counters, issued)
    : redisFirstStats(coupon, counters, issued, 0)
}

/** A released sale's audit: the rows' checks, and the copied decisions against the rows. */
export async function releasedAudit(db: Db, coupon: Coupon): Promise<CouponAudit> {
  const [pg, conflicts] = await Promise.all([auditRows(db, coupon.id), outcomeConflicts(db, coupon.id)])
  const rows = pg?.rows ?? 0
  const inconsistencies = rowInconsistencies(coupon, pg)
  const report = (users: string[], what: string) => {
    if (users.length > 0)
      inconsistencies.push(`${users.length} users ${what} (e.g. ${users.slice(0, 5).join(', ')})`)
  }
  report(conflicts.issuedWithoutRow, 'are ISSUED in Redis but have no row')
  report(conflicts.soldOutWithRow, 'are SOLD_OUT in Redis but hold a row')
  return {
    quantity: coupon.quantity,
    issuedRows: rows,
    duplicateRows: rows - (pg?.distinct_users ?? 0),
    overIssued: Math.max(rows - coupon.quantity, 0),
    acceptedNotYetIssued: 0,
    deadLettered: 0,
    inconsistencies,
  }
}
