import { type UserCouponStatus, userCouponStatus } from '../domain/coupon.ts'
import type { Db } from '../storage/postgres.ts'
import { listUserCoupons, type UserCouponView } from '../storage/user-coupons.ts'
import { type Redemption, redeemUserCoupon } from './redeem.ts'

export type { Redemption } from './redeem.ts'

export interface UserCouponWithStatus extends UserCouponView {
  status: UserCouponStatus
}

/** What a user does with the coupons they hold: the one way in for `GET /me/coupons` and redeeming. */
export interface UserCouponService {
  /** The user's coupons, newest first, each with its status at `now`. */
  list(userId: string, now?: Date): Promise<UserCouponWithStatus[]>
  /** Redeems one of the user's coupons against an order, once. */
  redeem(userId: string, userCouponId: number, orderAmount: number): Promise<Redemption>
}

export function userCouponService(db: Db): UserCouponService {
  return {
    async list(userId, now = new Date()) {
      return (await listUserCoupons(db, userId)).map((coupon) => ({
        ...coupon,
        status: userCouponStatus(coupon.redeemedAt, coupon.expiresAt, now),
      }))
    },
    redeem: (userId, userCouponId, orderAmount) => redeemUserCoupon(db, userId, userCouponId, orderAmount),
  }
}
