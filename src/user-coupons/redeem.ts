import { discountFor } from '../domain/coupon.ts'
import { AppError } from '../domain/errors.ts'
import { type Db, inTransaction } from '../storage/postgres.ts'
import { lockUserCoupon, markRedeemed } from '../storage/user-coupons.ts'

export interface Redemption {
  discountAmount: number
  payAmount: number
  redeemedAt: Date
}

/**
 * Redeems a user's coupon against an order, once: the row is locked for the transaction, so concurrent
 * redeem calls queue up and all but the first see it redeemed.
 */
export async function redeemUserCoupon(
  db: Db,
  userId: string,
  userCouponId: number,
  orderAmount: number,
): Promise<Redemption> {
  return inTransaction(db, async (client) => {
    const userCoupon = await lockUserCoupon(client, userCouponId, userId)
    if (userCoupon === undefined)
      throw new AppError('USER_COUPON_NOT_FOUND', `user has no coupon ${userCouponId}`)
    if (userCoupon.redeemedAt !== null) {
      throw new AppError('ALREADY_REDEEMED', `redeemed at ${userCoupon.redeemedAt.toISOString()}`)
    }
    if (userCoupon.expiresAt <= new Date()) {
      throw new AppError('COUPON_EXPIRED', `expired at ${userCoupon.expiresAt.toISOString()}`)
    }
    const discountAmount = discountFor(userCoupon.discount, orderAmount)
    const redeemedAt = await markRedeemed(client, userCouponId, orderAmount, discountAmount)
    if (redeemedAt === undefined) throw new AppError('ALREADY_REDEEMED')
    return { discountAmount, payAmount: orderAmount - discountAmount, redeemedAt }
  })
}
