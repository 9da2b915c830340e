import type { Coupon } from '../../domain/coupon.ts'
import { auditRows, rowHolders } from '../../storage/audit.ts'
import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'

export interface CouponAudit {
  quantity: number
  issuedRows: number
  duplicateRows: number
  overIssued: number
  acceptedNotYetIssued: number
  deadLettered: number
  inconsistencies: string[]
}

// Beyond this many users the per-user comparison is skipped (the counters are still checked).
const MAX_USERS_COMPARED = 500_000
const EXAMPLES = 5

/** What the rows alone say is wrong: a counter that disagrees with them, over-issue, duplicates. */
export function rowInconsistencies(
  coupon: Pick<Coupon, 'quantity'>,
  pg: Awaited<ReturnType<typeof auditRows>>,
): string[] {
  const rows = pg?.rows ?? 0
  const found: string[] = []
  if (pg && pg.issued_count !== rows)
    found.push(`coupons.issued_count is ${pg.issued_count} but there are ${rows} rows`)
  if (rows > coupon.quantity)
    found.push(`${rows - coupon.quantity} rows beyond the quantity of ${coupon.quantity}`)
  if (pg && pg.distinct_users !== rows) found.push(`${rows - pg.distinct_users} duplicate rows`)
  return found
}

/**
 * Reconciles a coupon's Redis state against Postgres: counts rows, duplicates and over-issue from Postgres,
 * and, where Redis records every request (`recordsEveryRequest`: the Redis-first modes), compares every
 * user's Redis record with the rows. Differences are listed in words; a clean coupon (after its backlog
 * drained) has none.
 */
export async function auditCoupon(
  ctx: IssuanceContext,
  coupon: Coupon,
  { recordsEveryRequest }: { recordsEveryRequest: boolean },
): Promise<CouponAudit> {
  const redisState = new CouponStates(ctx).of(coupon.id)
  const { keys } = redisState
  const [pg, state, deadLettered, userCount] = await Promise.all([
    auditRows(ctx.db, coupon.id),
    redisState.readCounters(),
    ctx.redis.xlen(keys.deadLetters),
    redisState.recordCount(),
  ])
  const rows = pg?.rows ?? 0
  const inconsistencies = rowInconsistencies(coupon, pg)
  if (!state.loaded)
    inconsistencies.push('Redis holds no state for this coupon (lost); it is rebuilt on the next request')
  if (deadLettered > 0)
    inconsistencies.push(
      `${deadLettered} accepted requests are in the dead-letter stream ${keys.deadLetters}`,
    )

  let waiting = 0
  if (userCount <= MAX_USERS_COMPARED && recordsEveryRequest) {
    const withRow = await rowHolders(ctx.db, coupon.id)
    const issuedWithoutRow: string[] = []
    const soldOutWithRow: string[] = []
    const seen = new Set<string>()
    await redisState.scanRecords((userId, record) => {
      seen.add(userId)
      if (record.status === 'ACCEPTED' || record.status === 'PENDING') {
        if (!withRow.has(userId)) waiting++
      } else if (record.status === 'ISSUED' && !withRow.has(userId)) issuedWithoutRow.push(userId)
      else if (record.status === 'SOLD_OUT' && withRow.has(userId)) soldOutWithRow.push(userId)
    })
    const rowsUnknownToRedis = state.loaded ? [...withRow].filter((user) => !seen.has(user)) : []
    const report = (users: string[], what: string) => {
      if (users.length > 0)
        inconsistencies.push(`${users.length} users ${what} (e.g. ${users.slice(0, EXAMPLES).join(', ')})`)
    }
    report(issuedWithoutRow, 'are ISSUED in Redis but have no row')
    report(soldOutWithRow, 'are SOLD_OUT in Redis but hold a row')
    report(rowsUnknownToRedis, 'hold a row but are unknown to Redis')
  } else if (recordsEveryRequest) {
    waiting = Math.max(state.seq - rows, 0)
  }
  return {
    quantity: coupon.quantity,
    issuedRows: rows,
    duplicateRows: rows - (pg?.distinct_users ?? 0),
    overIssued: Math.max(rows - coupon.quantity, 0),
    acceptedNotYetIssued: waiting,
    deadLettered,
    inconsistencies,
  }
}
