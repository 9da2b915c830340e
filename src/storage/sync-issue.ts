import { assertIssuing } from '../domain/coupon.ts'
import { AppError } from '../domain/errors.ts'
import { type DbClient, prepared } from './postgres.ts'
import { findUserCouponOf, type UserCouponView } from './user-coupons.ts'

export interface IssuedOne {
  id: number
  /** The new issued_count: 1..quantity in issue order. */
  position: number
  quantity: number
  requestedAt: Date
  issuedAt: Date
}

/** What one sync issue decided: issued, or refused (already holding one, with its row; or sold out). */
export type IssueOneResult =
  | { kind: 'issued'; issued: IssuedOne }
  | { kind: 'alreadyRequested'; row: UserCouponView | undefined }
  | { kind: 'soldOut' }

// The three statements of every sync issue, prepared once per connection (storage/postgres.ts `prepared`).
const LOCK_COUPON = prepared(
  'sync-lock-coupon',
  1,
  'SELECT quantity, issued_count, issue_starts_at, issue_ends_at, paused FROM coupons WHERE id = $1 FOR UPDATE',
)
const INSERT_ONE = prepared(
  'sync-insert-one',
  1,
  `INSERT INTO user_coupons (coupon_id, user_id, position, requested_at, issued_at, expires_at)
   SELECT c.id, $2, c.issued_count + 1, $3, now(), LEAST(now() + make_interval(days => c.valid_days), c.valid_until)
   FROM coupons c WHERE c.id = $1
   ON CONFLICT (coupon_id, user_id) DO NOTHING
   RETURNING id, position, requested_at, issued_at`,
)
const COUNT_ONE = prepared(
  'sync-count-one',
  1,
  'UPDATE coupons SET issued_count = issued_count + 1 WHERE id = $1 AND issued_count < quantity RETURNING issued_count',
)

/**
 * Issues one coupon to one user in the caller's transaction (the `sync` mode, under its fair lock): locks and
 * validates the coupon, inserts the user's row, then deducts the stock with a guarded update. A refusal
 * writes nothing, so the transaction may commit. Throws COUPON_NOT_FOUND and ISSUE_NOT_STARTED / ISSUE_ENDED.
 */
export async function issueOne(
  client: DbClient,
  couponId: number,
  userId: string,
  requestedAt: Date,
): Promise<IssueOneResult> {
  // The row lock also serialises writers whose fair-lock lease ran out, so the counts below are exact.
  const locked = await client.query<{
    quantity: number
    issued_count: number
    issue_starts_at: Date
    issue_ends_at: Date
    paused: boolean
  }>({ ...LOCK_COUPON, values: [couponId] })
  const coupon = locked.rows[0]
  if (coupon === undefined) throw new AppError('COUPON_NOT_FOUND', `no coupon ${couponId}`)
  // requestedAt is Redis's time (the sync mode's window check): no process clock decides.
  assertIssuing(
    { issueStartsAt: coupon.issue_starts_at, issueEndsAt: coupon.issue_ends_at, paused: coupon.paused },
    requestedAt,
  )
  if (coupon.issued_count >= coupon.quantity) {
    // A holder asking again is told so even once the stock is gone.
    const existing = await findUserCouponOf(client, couponId, userId)
    return existing === undefined ? { kind: 'soldOut' } : { kind: 'alreadyRequested', row: existing }
  }

  const inserted = await client.query<{ id: number; position: number; requested_at: Date; issued_at: Date }>({
    ...INSERT_ONE,
    values: [couponId, userId, requestedAt],
  })
  const row = inserted.rows[0]
  if (row === undefined) {
    return { kind: 'alreadyRequested', row: await findUserCouponOf(client, couponId, userId) }
  }

  const counted = await client.query<{ issued_count: number }>({ ...COUNT_ONE, values: [couponId] })
  // Under the row lock with stock checked above, the guard cannot fail: if it does, roll back (throw).
  const issuedCount = counted.rows[0]?.issued_count
  if (issuedCount !== row.position)
    throw new Error(`position ${row.position} but issued_count ${issuedCount}`)
  return {
    kind: 'issued',
    issued: {
      id: row.id,
      position: row.position,
      quantity: coupon.quantity,
      requestedAt: row.requested_at,
      issuedAt: row.issued_at,
    },
  }
}
