import { assertIssuing, type Issuance } from '../domain/coupon.ts'
import { AppError } from '../domain/errors.ts'
import type { DbClient } from './postgres.ts'
import { findUserCouponOf, type UserCouponView } from './user-coupons.ts'

export interface IssuedOne {
  id: number
  /** The new issued_count: 1..quantity in issue order. */
  position: number
  quantity: number
  requestedAt: Date
  issuedAt: Date
}

/**
 * Issues one coupon to one user in the caller's transaction (the `sync` mode, under its fair lock): locks and
 * validates the coupon, inserts the user's row, then deducts the stock with a guarded update. Throws
 * COUPON_NOT_FOUND, ISSUE_NOT_STARTED / ISSUE_ENDED, ALREADY_REQUESTED (with the current issuance) or
 * SOLD_OUT; on SOLD_OUT the caller's transaction must roll back, which removes the inserted row.
 */
export async function issueOne(
  client: DbClient,
  couponId: number,
  userId: string,
  requestedAt: Date,
): Promise<IssuedOne> {
  // The row lock also serialises writers whose fair-lock lease ran out, so the position below is exact.
  const locked = await client.query<{ quantity: number; issue_starts_at: Date; issue_ends_at: Date }>(
    'SELECT quantity, issue_starts_at, issue_ends_at FROM coupons WHERE id = $1 FOR UPDATE',
    [couponId],
  )
  const coupon = locked.rows[0]
  if (coupon === undefined) throw new AppError('COUPON_NOT_FOUND', `no coupon ${couponId}`)
  assertIssuing({ issueStartsAt: coupon.issue_starts_at, issueEndsAt: coupon.issue_ends_at }, new Date())

  const inserted = await client.query<{ id: number; position: number; requested_at: Date; issued_at: Date }>(
    `INSERT INTO user_coupons (coupon_id, user_id, position, requested_at, issued_at, expires_at)
     SELECT c.id, $2, c.issued_count + 1, $3, now(), LEAST(now() + make_interval(days => c.valid_days), c.valid_until)
     FROM coupons c WHERE c.id = $1
     ON CONFLICT (coupon_id, user_id) DO NOTHING
     RETURNING id, position, requested_at, issued_at`,
    [couponId, userId, requestedAt],
  )
  const row = inserted.rows[0]
  if (row === undefined) {
    const existing = await findUserCouponOf(client, couponId, userId)
    throw new AppError('ALREADY_REQUESTED', undefined, {
      extra: existing === undefined ? {} : { issuance: issuanceOfRow(existing, userId) },
    })
  }

  const counted = await client.query<{ issued_count: number }>(
    'UPDATE coupons SET issued_count = issued_count + 1 WHERE id = $1 AND issued_count < quantity RETURNING issued_count',
    [couponId],
  )
  const issuedCount = counted.rows[0]?.issued_count
  if (issuedCount === undefined) throw new AppError('SOLD_OUT')
  if (issuedCount !== row.position)
    throw new Error(`position ${row.position} but issued_count ${issuedCount}`)
  return {
    id: row.id,
    position: row.position,
    quantity: coupon.quantity,
    requestedAt: row.requested_at,
    issuedAt: row.issued_at,
  }
}

/** A user's row as their issuance status (rows are only ever ISSUED). */
export function issuanceOfRow(row: UserCouponView, userId: string): Issuance {
  return {
    couponId: row.couponId,
    userId,
    status: 'ISSUED',
    ...(row.position === null ? {} : { position: row.position }),
    userCouponId: row.id,
    requestedAt: row.requestedAt.toISOString(),
    decidedAt: row.issuedAt.toISOString(),
  }
}
