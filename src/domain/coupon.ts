/** Pure coupon rules: no I/O here, so they are unit-testable and shared by every mode. */
import { AppError } from './errors.ts'

export const ISSUE_MODES = ['sync', 'queue', 'stream', 'kafka'] as const
export type IssueMode = (typeof ISSUE_MODES)[number]

export type Discount =
  | { type: 'FIXED'; amount: number }
  | { type: 'RATE'; percent: number; maxAmount?: number }

export interface Coupon {
  id: number
  name: string
  discount: Discount
  quantity: number
  issuedCount: number
  issueStartsAt: Date
  issueEndsAt: Date
  validDays: number | null
  validUntil: Date | null
  issueMode: IssueMode
  createdAt: Date
}

export type CouponStatus = 'SCHEDULED' | 'ISSUING' | 'SOLD_OUT' | 'ENDED'

export function couponStatus(
  coupon: Pick<Coupon, 'issueStartsAt' | 'issueEndsAt'>,
  remaining: number,
  now: Date,
) {
  if (now < coupon.issueStartsAt) return 'SCHEDULED' satisfies CouponStatus
  if (now >= coupon.issueEndsAt) return 'ENDED' satisfies CouponStatus
  return (remaining <= 0 ? 'SOLD_OUT' : 'ISSUING') satisfies CouponStatus
}

/** Throws unless `now` is inside the coupon's issue window [issueStartsAt, issueEndsAt). */
export function assertIssuing(coupon: Pick<Coupon, 'issueStartsAt' | 'issueEndsAt'>, now: Date): void {
  if (now < coupon.issueStartsAt) {
    throw new AppError('ISSUE_NOT_STARTED', `issuance starts at ${coupon.issueStartsAt.toISOString()}`)
  }
  if (now >= coupon.issueEndsAt)
    throw new AppError('ISSUE_ENDED', `issuance ended at ${coupon.issueEndsAt.toISOString()}`)
}

/** When a coupon issued at `issuedAt` stops being usable: the earlier of validDays and validUntil. */
export function expiryOf(coupon: Pick<Coupon, 'validDays' | 'validUntil'>, issuedAt: Date): Date {
  const candidates: number[] = []
  if (coupon.validDays !== null) candidates.push(issuedAt.getTime() + coupon.validDays * 86_400_000)
  if (coupon.validUntil !== null) candidates.push(coupon.validUntil.getTime())
  return new Date(Math.min(...candidates))
}

/** The discount for an order: FIXED takes min(amount, order); RATE floors order×percent/100, capped. */
export function discountFor(discount: Discount, orderAmount: number): number {
  if (discount.type === 'FIXED') return Math.min(discount.amount, orderAmount)
  const byRate = Math.floor((orderAmount * discount.percent) / 100)
  return discount.maxAmount === undefined ? byRate : Math.min(byRate, discount.maxAmount)
}

export type UserCouponStatus = 'AVAILABLE' | 'REDEEMED' | 'EXPIRED'

export function userCouponStatus(redeemedAt: Date | null, expiresAt: Date, now: Date): UserCouponStatus {
  if (redeemedAt !== null) return 'REDEEMED'
  return now >= expiresAt ? 'EXPIRED' : 'AVAILABLE'
}

/** The request/decision state of one user for one coupon (GET /coupons/{id}/issuance). */
export type IssuanceStatus = 'PENDING' | 'ACCEPTED' | 'ISSUED' | 'SOLD_OUT'

export interface Issuance {
  couponId: number
  userId: string
  status: IssuanceStatus
  position?: number
  userCouponId?: number
  requestedAt: string
  decidedAt?: string
}
