/** Pure coupon rules: no I/O here, so they are unit-testable and shared by every mode. */
import { type Static, Type } from 'typebox'
import { Value } from 'typebox/value'
import { AppError } from './errors.ts'

/*
 * The domain shapes are TypeBox schemas and their types are `Static<>` of them: one source for the types,
 * the request and response validation and the OpenAPI document (src/http/schemas.ts builds on these).
 */

/** The issue modes; the SQL CHECK on coupons.issue_mode lists them too (a test proves they agree). */
export const ISSUE_MODES = ['sync', 'queue', 'stream', 'kafka'] as const
export const IssueMode = Type.Enum(ISSUE_MODES, { description: 'How requests are admitted and issued' })
export type IssueMode = Static<typeof IssueMode>

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
}

export type NewCoupon = Omit<Coupon, 'id' | 'issuedCount' | 'createdAt'>

export const CouponName = Type.String({
  minLength: 1,
  maxLength: 100,
  // Postgres text cannot hold NUL: refused here rather than failing in the INSERT.
  pattern: '^[^\\u0000]*$',
  description: '1-100 characters, no NUL',
})
export const Quantity = Type.Integer({ minimum: 1, maximum: 10_000_000 })
export const ValidDays = Type.Integer({ minimum: 1, maximum: 3650 })

/** The fields of a new coupon that a schema can check on their own (the dates are checked below). */
const NewCouponFields = Type.Object({
  name: CouponName,
  discount: Discount,
  quantity: Quantity,
  validDays: Type.Union([ValidDays, Type.Null()]),
  issueMode: IssueMode,
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

export const CouponStatus = Type.Enum(['SCHEDULED', 'ISSUING', 'SOLD_OUT', 'ENDED'])
export type CouponStatus = Static<typeof CouponStatus>

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

export const UserCouponStatus = Type.Enum(['AVAILABLE', 'REDEEMED', 'EXPIRED'])
export type UserCouponStatus = Static<typeof UserCouponStatus>

export function userCouponStatus(redeemedAt: Date | null, expiresAt: Date, now: Date): UserCouponStatus {
  if (redeemedAt !== null) return 'REDEEMED'
  return now >= expiresAt ? 'EXPIRED' : 'AVAILABLE'
}

export const IssuanceStatus = Type.Enum(['PENDING', 'ACCEPTED', 'ISSUED', 'SOLD_OUT'])
export type IssuanceStatus = Static<typeof IssuanceStatus>

/** The request/decision state of one user for one coupon (GET /coupons/{id}/issuance). */
export const Issuance = Type.Object({
  couponId: Type.Integer(),
  userId: Type.String(),
  status: IssuanceStatus,
  position: Type.Optional(Type.Integer()),
  userCouponId: Type.Optional(Type.Integer()),
  requestedAt: Type.String({ format: 'date-time' }),
  decidedAt: Type.Optional(Type.String({ format: 'date-time' })),
})
export type Issuance = Static<typeof Issuance>

/** Live counters of one coupon (GET /admin/coupons/{id} `stats`). */
export const CouponStats = Type.Object({
  requested: Type.Integer({
    description:
      'Requests that reached admission: accepted plus refused as sold out (duplicates not counted)',
  }),
  accepted: Type.Integer({ description: 'Requests admitted with a position (2xx)' }),
  pending: Type.Integer({
    description: 'Admitted but not decided yet (queue: waiting; stream/kafka: accepted, no row yet)',
  }),
  issued: Type.Integer({ description: 'Rows in Postgres' }),
  soldOut: Type.Integer({ description: 'Requests refused or resolved as sold out' }),
  remaining: Type.Integer({ description: 'Stock not yet promised to anyone' }),
})
export type CouponStats = Static<typeof CouponStats>

/** The fields every view of a coupon shows (the public one and the admin one). */
export const couponViewFields = {
  id: Type.Integer(),
  name: Type.String(),
  discount: Discount,
  quantity: Type.Integer(),
  issueStartsAt: Type.String({ format: 'date-time' }),
  issueEndsAt: Type.String({ format: 'date-time' }),
  issueMode: IssueMode,
}

/** A coupon as shoppers see it (GET /coupons/{id}). */
export const PublicCoupon = Type.Object({
  ...couponViewFields,
  remaining: Type.Integer(),
  status: CouponStatus,
})
export type PublicCoupon = Static<typeof PublicCoupon>
