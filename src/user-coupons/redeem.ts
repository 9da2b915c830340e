import { AppError } from '../domain/errors.ts'
import { decideCancel, decideRedeem, type Order } from '../domain/redemption.ts'
import { type UserCouponStatus, userCouponStatus } from '../domain/user-coupon.ts'
import { type Db, type DbClient, inTransaction } from '../storage/postgres.ts'
import { cancelLiveRedemption, insertRedemption, redemptionsOf } from '../storage/redemptions.ts'
import { lockUserCoupon } from '../storage/user-coupons.ts'

export interface Redemption {
  orderId: string
  orderAmount: number
  discountAmount: number
  payAmount: number
  redeemedAt: Date
}

export interface RedemptionCancellation {
  orderId: string
  redeemedAt: Date
  cancelledAt: Date
  /** The coupon's status after the cancellation: AVAILABLE, or EXPIRED past its expiry. */
  status: UserCouponStatus
}

// A unique violation on the live-redemption index: another redemption got in first (the row lock makes
// this unreachable; the index is the backstop).
const UNIQUE_VIOLATION = '23505'

async function lockedCoupon(client: DbClient, userId: string, userCouponId: number) {
  const userCoupon = await lockUserCoupon(client, userCouponId, userId)
  if (userCoupon === undefined)
    throw new AppError('USER_COUPON_NOT_FOUND', `user has no coupon ${userCouponId}`)
  return userCoupon
}

/**
 * Redeems a user's coupon against an order, once: the row is locked for the transaction, so concurrent
 * calls queue up; a call with the order that already redeemed it gets that redemption again.
 */
export async function redeemUserCoupon(
  db: Db,
  userId: string,
  userCouponId: number,
  order: Order,
): Promise<Redemption> {
  const redemption = await inTransaction(db, async (client) => {
    const userCoupon = await lockedCoupon(client, userId, userCouponId)
    const known = await redemptionsOf(client, userCouponId, order.orderId)
    const decision = decideRedeem(userCoupon, known, order, new Date())
    if (decision.kind === 'replay') return decision.redemption
    return insertRedemption(client, userCouponId, order, decision.discountAmount)
  }).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === UNIQUE_VIOLATION) throw new AppError('ALREADY_REDEEMED')
    throw error
  })
  return {
    orderId: order.orderId,
    orderAmount: redemption.orderAmount,
    discountAmount: redemption.discountAmount,
    payAmount: redemption.orderAmount - redemption.discountAmount,
    redeemedAt: redemption.redeemedAt,
  }
}

/**
 * Cancels the redemption by `orderId` (the order was refunded), once: the coupon is AVAILABLE again unless
 * it has expired. A repeated cancel of the same order gets the first cancellation again.
 */
export async function cancelRedemption(
  db: Db,
  userId: string,
  userCouponId: number,
  orderId: string,
): Promise<RedemptionCancellation> {
  return inTransaction(db, async (client) => {
    const userCoupon = await lockedCoupon(client, userId, userCouponId)
    const decision = decideCancel(await redemptionsOf(client, userCouponId, orderId), orderId)
    const cancelled =
      decision.kind === 'replay' ? decision.redemption : await cancelLiveRedemption(client, userCouponId)
    const redeemedNow = decision.kind === 'replay' ? userCoupon.redeemedAt : null
    return {
      orderId,
      redeemedAt: cancelled.redeemedAt,
      cancelledAt: cancelled.cancelledAt ?? new Date(),
      status: userCouponStatus(redeemedNow, userCoupon.expiresAt, new Date()),
    }
  })
}
