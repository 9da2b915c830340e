import type { Order, RedemptionRecord, RedemptionsOf } from '../domain/redemption.ts'
import type { DbClient } from './postgres.ts'

/*
 * A user coupon's redemptions: one `redemptions` row per redeem (kept when cancelled), mirrored on the
 * user coupon as its current redemption. Callers hold the user coupon's row lock (lockUserCoupon), so
 * these run one call at a time per coupon; the unique partial index on the live row is the backstop.
 */

interface RedemptionRow {
  order_id: string | null
  order_amount: number
  discount_amount: number
  redeemed_at: Date
  cancelled_at: Date | null
}

function toRecord(row: RedemptionRow): RedemptionRecord {
  return {
    orderId: row.order_id,
    orderAmount: row.order_amount,
    discountAmount: row.discount_amount,
    redeemedAt: row.redeemed_at,
    cancelledAt: row.cancelled_at,
  }
}

/** The coupon's live redemption and the latest redemption of `orderId`, in one query. */
export async function redemptionsOf(
  client: DbClient,
  userCouponId: number,
  orderId: string,
): Promise<RedemptionsOf> {
  const { rows } = await client.query<RedemptionRow>(
    `SELECT order_id, order_amount, discount_amount, redeemed_at, cancelled_at FROM redemptions
     WHERE user_coupon_id = $1 AND (cancelled_at IS NULL OR order_id = $2)
     ORDER BY id DESC`,
    [userCouponId, orderId],
  )
  const records = rows.map(toRecord)
  return {
    live: records.find((record) => record.cancelledAt === null),
    ofOrder: records.find((record) => record.orderId === orderId),
  }
}

/** Records a redemption and makes it the coupon's current one; returns it. */
export async function insertRedemption(
  client: DbClient,
  userCouponId: number,
  order: Order,
  discountAmount: number,
): Promise<RedemptionRecord> {
  const { rows } = await client.query<RedemptionRow>(
    `WITH redeemed AS (
       INSERT INTO redemptions (user_coupon_id, order_id, order_amount, discount_amount)
       VALUES ($1, $2, $3, $4)
       RETURNING order_id, order_amount, discount_amount, redeemed_at, cancelled_at
     ),
     mirrored AS (
       UPDATE user_coupons SET redeemed_at = redeemed.redeemed_at, order_id = $2, order_amount = $3,
              discount_amount = $4, cancelled_at = NULL
       FROM redeemed WHERE id = $1
     )
     SELECT * FROM redeemed`,
    [userCouponId, order.orderId, order.orderAmount, discountAmount],
  )
  return toRecord(rows[0]!)
}

/** Cancels the coupon's live redemption and clears it from the coupon; returns it, cancelled. */
export async function cancelLiveRedemption(
  client: DbClient,
  userCouponId: number,
): Promise<RedemptionRecord> {
  const { rows } = await client.query<RedemptionRow>(
    `WITH cancelled AS (
       UPDATE redemptions SET cancelled_at = now()
       WHERE user_coupon_id = $1 AND cancelled_at IS NULL
       RETURNING order_id, order_amount, discount_amount, redeemed_at, cancelled_at
     ),
     mirrored AS (
       UPDATE user_coupons SET redeemed_at = NULL, order_id = NULL, order_amount = NULL,
              discount_amount = NULL, cancelled_at = cancelled.cancelled_at
       FROM cancelled WHERE id = $1
     )
     SELECT * FROM cancelled`,
    [userCouponId],
  )
  const cancelled = rows[0]
  if (cancelled === undefined) throw new Error(`user coupon ${userCouponId} holds no live redemption`)
  return toRecord(cancelled)
}
