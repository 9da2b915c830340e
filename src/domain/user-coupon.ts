/** A coupon a user holds: when it expires and its status. Pure rules, no I/O. */
import type { Coupon } from './coupon.ts'

/** When a coupon issued at `issuedAt` stops being usable: the earlier of validDays and validUntil. */
export function expiryOf(coupon: Pick<Coupon, 'validDays' | 'validUntil'>, issuedAt: Date): Date {
  const candidates: number[] = []
  if (coupon.validDays !== null) candidates.push(issuedAt.getTime() + coupon.validDays * 86_400_000)
  if (coupon.validUntil !== null) candidates.push(coupon.validUntil.getTime())
  return new Date(Math.min(...candidates))
}

export const USER_COUPON_STATUSES = ['AVAILABLE', 'REDEEMED', 'EXPIRED'] as const
export type UserCouponStatus = (typeof USER_COUPON_STATUSES)[number]

export function userCouponStatus(redeemedAt: Date | null, expiresAt: Date, now: Date): UserCouponStatus {
  if (redeemedAt !== null) return 'REDEEMED'
  return now >= expiresAt ? 'EXPIRED' : 'AVAILABLE'
}
