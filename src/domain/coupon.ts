/** Pure coupon rules: no I/O here, so they are unit-testable and shared by every mode. */
import { type Static, Type } from 'typebox'
import { Value } from 'typebox/value'
import { AppError } from './errors.ts'

/*
 * Rules only: the limits a new coupon must meet are TypeBox schemas (checkNewCoupon runs them; the HTTP
 * request schemas build on them); the API's view shapes live in src/http/schemas.ts.
 */

export type { CouponStats, Issuance, IssuanceStatus } from './issuance.ts'

/** The issue modes; the SQL CHECK on coupons.issue_mode lists them too (a test proves they agree). */
export const ISSUE_MODES = ['sync', 'queue', 'stream', 'kafka'] as const
export type IssueMode = (typeof ISSUE_MODES)[number]

/** The largest amount of money anywhere in the API (discounts, orders). */
export const MAX_AMOUNT = 1_000_000_000
const Amount = Type.Integer({ minimum: 1, maximum: MAX_AMOUNT })

export const Discount = Type.Union(
  [
    Type.Object({ type: Type.Literal('FIXED'), amount: Amount }, { additionalProperties: false }),
    Type.Object(
      {
        type: Type.Literal('RATE'),
        percent: Type.Integer({ minimum: 1, maximum: 100 }),
        maxAmount: Type.Optional(Amount),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'FIXED: a fixed amount off; RATE: a percentage off, optionally capped' },
)
export type Discount = Static<typeof Discount>

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
  /**
   * Set once the ended sale's Redis state was released to Postgres (issue 18): every read answers from
   * Postgres, nothing rebuilds it. Travels with the cached coupon, so checking it costs nothing.
   */
  releasedAt?: Date
}

export type NewCoupon = Omit<Coupon, 'id' | 'issuedCount' | 'createdAt' | 'releasedAt'>

/** The fields of a new coupon that a schema can check on their own (the dates are checked below). */
export const NewCouponFields = Type.Object({
  name: Type.String({
    minLength: 1,
    maxLength: 100,
    // Postgres text cannot hold NUL: refused here rather than failing in the INSERT.
    pattern: '^[^\\u0000]*$',
    description: '1-100 characters, no NUL',
  }),
  discount: Discount,
  quantity: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
  validDays: Type.Union([Type.Integer({ minimum: 1, maximum: 3650 }), Type.Null()]),
  issueMode: Type.Enum(ISSUE_MODES, { description: 'How requests are admitted and issued' }),
})

/**
 * Every rule a new coupon must meet, the cross-field ones included: the insert runs it, so nothing that
 * breaks them is stored, whoever the caller. Throws VALIDATION_ERROR naming the rule.
 */
export function checkNewCoupon(coupon: NewCoupon): void {
  const refuse = (detail: string): never => {
    throw new AppError('VALIDATION_ERROR', detail)
  }
  const fields = {
    name: coupon.name,
    discount: coupon.discount,
    quantity: coupon.quantity,
    validDays: coupon.validDays,
    issueMode: coupon.issueMode,
  }
  for (const error of Value.Errors(NewCouponFields, fields))
    refuse(`${error.instancePath.slice(1)} ${error.message}`)
  for (const [field, date] of [
    ['issueStartsAt', coupon.issueStartsAt],
    ['issueEndsAt', coupon.issueEndsAt],
    ['validUntil', coupon.validUntil],
  ] as const) {
    if (date !== null && !Number.isFinite(date.getTime())) refuse(`${field} is not a valid date`)
  }
  if (coupon.issueEndsAt <= coupon.issueStartsAt) refuse('issueEndsAt must be after issueStartsAt')
  if (coupon.validDays === null && coupon.validUntil === null) refuse('give validDays, validUntil or both')
  // A coupon issued at the last moment of the window must still be usable.
  if (coupon.validUntil !== null && coupon.validUntil <= coupon.issueEndsAt)
    refuse('validUntil must be after issueEndsAt')
}

export const COUPON_STATUSES = ['SCHEDULED', 'ISSUING', 'SOLD_OUT', 'ENDED'] as const
export type CouponStatus = (typeof COUPON_STATUSES)[number]

export function couponStatus(
  coupon: Pick<Coupon, 'issueStartsAt' | 'issueEndsAt'>,
  remaining: number,
  now: Date,
): CouponStatus {
  if (now < coupon.issueStartsAt) return 'SCHEDULED'
  if (now >= coupon.issueEndsAt) return 'ENDED'
  return remaining <= 0 ? 'SOLD_OUT' : 'ISSUING'
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

export const USER_COUPON_STATUSES = ['AVAILABLE', 'REDEEMED', 'EXPIRED'] as const
export type UserCouponStatus = (typeof USER_COUPON_STATUSES)[number]

export function userCouponStatus(redeemedAt: Date | null, expiresAt: Date, now: Date): UserCouponStatus {
  if (redeemedAt !== null) return 'REDEEMED'
  return now >= expiresAt ? 'EXPIRED' : 'AVAILABLE'
}

/** A coupon as shoppers see it (GET /coupons/{id}); dates as ISO 8601. */
export interface PublicCoupon {
  id: number
  name: string
  discount: Discount
  quantity: number
  remaining: number
  status: CouponStatus
  issueStartsAt: string
  issueEndsAt: string
  issueMode: IssueMode
}
