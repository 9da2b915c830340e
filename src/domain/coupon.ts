/** Pure coupon rules: no I/O here, so they are unit-testable and shared by every mode. */
import { Type } from 'typebox'
import { Value } from 'typebox/value'
import { Amount, Discount } from './discount.ts'
import { AppError } from './errors.ts'
import { ProofOfWork } from './proof-of-work.ts'

/*
 * Rules only: the limits a new coupon must meet are TypeBox schemas (checkNewCoupon runs them; the HTTP
 * request schemas build on them); the API's view shapes live in src/http/schemas/.
 */

export type { CouponStats, Issuance, IssuanceStatus, Receipt } from './issuance.ts'

/** The issue modes; the SQL CHECK on coupons.issue_mode lists them too (a test proves they agree). */
export const ISSUE_MODES = ['sync', 'queue', 'stream', 'kafka'] as const
export type IssueMode = (typeof ISSUE_MODES)[number]

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
  /** Set: each issuance request must carry a solved challenge; null: off. */
  proofOfWork: ProofOfWork | null
  /** The least order amount the coupon can be redeemed against; null: any order. */
  minOrderAmount: number | null
  createdAt: Date
  /** Issuance refused with ISSUE_PAUSED while true (PATCH /admin/coupons/{id}). */
  paused: boolean
  /** When the pre-queue opens (before issueStartsAt), or null for no pre-queue. */
  prequeueStartsAt: Date | null
  prequeueOrder: PrequeueOrder | null
  /** Hex SHA-256 of the pre-queue's shuffle seed (public); null without a pre-queue. */
  seedCommitment: string | null
  /**
   * Set once the ended sale's Redis state was released to Postgres (issue 18): every read answers from
   * Postgres, nothing rebuilds it. Travels with the cached coupon, so checking it costs nothing.
   */
  releasedAt?: Date
}

/** How the pre-queued are admitted at the start: as they came, or in the order the revealed seed fixes. */
export const PREQUEUE_ORDERS = ['arrival', 'shuffle'] as const
export type PrequeueOrder = (typeof PREQUEUE_ORDERS)[number]

export type NewCoupon = Omit<
  Coupon,
  | 'id'
  | 'issuedCount'
  | 'createdAt'
  | 'paused'
  | 'proofOfWork'
  | 'minOrderAmount'
  | 'seedCommitment'
  | 'prequeueStartsAt'
  | 'prequeueOrder'
  | 'releasedAt'
> &
  Partial<Pick<Coupon, 'proofOfWork' | 'minOrderAmount'>> & {
    prequeueStartsAt?: Date | null
    prequeueOrder?: PrequeueOrder | null
  }

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
  proofOfWork: Type.Union([ProofOfWork, Type.Null()]),
  minOrderAmount: Type.Union([Amount, Type.Null()]),
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
    proofOfWork: coupon.proofOfWork ?? null,
    minOrderAmount: coupon.minOrderAmount ?? null,
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
  checkPrequeue(coupon, refuse)
  // A coupon issued at the last moment of the window must still be usable.
  if (coupon.validUntil !== null && coupon.validUntil <= coupon.issueEndsAt)
    refuse('validUntil must be after issueEndsAt')
}

/** The pre-queue's rules: before the start, with an order, and not in `sync` (it has no queue to move into). */
function checkPrequeue(coupon: NewCoupon, refuse: (detail: string) => never): void {
  const startsAt = coupon.prequeueStartsAt ?? null
  const order = coupon.prequeueOrder ?? null
  if (startsAt === null) {
    if (order !== null) refuse('prequeueOrder needs prequeueStartsAt')
    return
  }
  if (!Number.isFinite(startsAt.getTime())) refuse('prequeueStartsAt is not a valid date')
  if (startsAt >= coupon.issueStartsAt) refuse('prequeueStartsAt must be before issueStartsAt')
  if (coupon.issueMode === 'sync')
    refuse('the sync mode has no pre-queue: prequeueStartsAt needs stream, queue or kafka')
  if (order !== null && !PREQUEUE_ORDERS.includes(order)) refuse('prequeueOrder must be arrival or shuffle')
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

/**
 * Throws unless `now` is inside the coupon's issue window [issueStartsAt, issueEndsAt) and the sale is not
 * paused (a coupon without `paused` is not).
 */
export function assertIssuing(
  coupon: Pick<Coupon, 'issueStartsAt' | 'issueEndsAt'> & { paused?: boolean },
  now: Date,
): void {
  if (now < coupon.issueStartsAt) {
    throw new AppError('ISSUE_NOT_STARTED', `issuance starts at ${coupon.issueStartsAt.toISOString()}`)
  }
  if (now >= coupon.issueEndsAt)
    throw new AppError('ISSUE_ENDED', `issuance ended at ${coupon.issueEndsAt.toISOString()}`)
  if (coupon.paused === true) throw new AppError('ISSUE_PAUSED', 'issuance is paused by the shop')
}

/** The error for a request the issue window (checked on Redis's clock) refused, or a paused coupon. */
export function windowRefusal(
  coupon: Pick<Coupon, 'issueStartsAt' | 'issueEndsAt'>,
  kind: 'notStarted' | 'ended' | 'paused',
): AppError {
  if (kind === 'paused') return new AppError('ISSUE_PAUSED', 'issuance of this coupon is paused')
  return kind === 'notStarted'
    ? new AppError('ISSUE_NOT_STARTED', `issuance starts at ${coupon.issueStartsAt.toISOString()}`)
    : new AppError('ISSUE_ENDED', `issuance ended at ${coupon.issueEndsAt.toISOString()}`)
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
  /** Set when each issuance request must carry a solved challenge (GET /coupons/{id}/challenge). */
  proofOfWork?: ProofOfWork
  minOrderAmount: number | null
  /** The pre-queue, when the coupon has one: its opening, order, seed commitment and (from the start) seed. */
  prequeueStartsAt?: string
  prequeueOrder?: PrequeueOrder
  seedCommitment?: string
  seed?: string
  /** How many wait in the pre-queue now. */
  prequeueLength?: number
}
