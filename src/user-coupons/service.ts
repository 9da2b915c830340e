import type { Order } from '../domain/redemption.ts'
import { type UserCouponStatus, userCouponStatus } from '../domain/user-coupon.ts'
import type { Db } from '../storage/postgres.ts'
import { listUserCoupons, type UserCouponView } from '../storage/user-coupons.ts'
import { cancelRedemption, type Redemption, type RedemptionCancellation, redeemUserCoupon } from './redeem.ts'

export type { Redemption, RedemptionCancellation } from './redeem.ts'

export interface UserCouponWithStatus extends UserCouponView {
  status: UserCouponStatus
}

/** What a user does with the coupons they hold: the one way in for `GET /me/coupons` and redemption. */
export interface UserCouponService {
  /** The user's coupons, newest first, each with its status at `now`. */
  list(userId: string, now?: Date): Promise<UserCouponWithStatus[]>
  /** Redeems one of the user's coupons against an order, once; the same order again gets the same answer. */
  redeem(userId: string, userCouponId: number, order: Order): Promise<Redemption>
  /** Cancels the redemption by an order (refunded), once; the coupon is AVAILABLE again unless expired. */
  cancelRedemption(userId: string, userCouponId: number, orderId: string): Promise<RedemptionCancellation>
}

export function userCouponService(db: Db): UserCouponService {
  return {
    async list(userId, now = new Date()) {
      return (await listUserCoupons(db, userId)).map((coupon) => ({
        ...coupon,
        status: userCouponStatus(coupon.redeemedAt, coupon.expiresAt, now),
      }))
    },
    redeem: (userId, userCouponId, order) => redeemUserCoupon(db, userId, userCouponId, order),
    cancelRedemption: (userId, userCouponId, orderId) => cancelRedemption(db, userId, userCouponId, orderId),
  }
}
