/** Pure rules of steering a live sale (PATCH /admin/coupons/{id}): which change is allowed when. */
import { type Coupon, checkNewCoupon } from './coupon.ts'
import { AppError } from './errors.ts'

/** The fields an admin may change; any subset, at least one. */
export interface CouponPatch {
  name?: string
  issueStartsAt?: Date
  issueEndsAt?: Date
  quantity?: number
  paused?: boolean
}

type Steerable = keyof CouponPatch
type Value = string | number | boolean

/** What a change did, field by field, as recorded in the coupon's history. */
export type ChangeRecord = Partial<Record<Steerable, { from: Value; to: Value }>>

export interface PlannedChange {
  updated: Coupon
  change: ChangeRecord
  /** Units added to the stock (0 when the quantity did not change). */
  addedStock: number
}

/**
 * Checks a patch against the coupon as it is now and returns the coupon after it. The rules:
 * - `name`: any time.
 * - `issueStartsAt`: only before the sale starts (else SALE_STARTED), and not in the past.
 * - `issueEndsAt`: any time before the sale ends: later extends it, earlier shortens it; a time at or
 *   before `now` ends it now (stored as `now`).
 * - `quantity`: up only (QUANTITY_DECREASE), so never below what is already promised.
 * - `paused`: any time before the sale ends.
 * After the end only `name` may change (SALE_ENDED): the sale's outcome is settled. Every rule of a new
 * coupon (window order, validity after the end) still holds after the change (VALIDATION_ERROR).
 */
export function planCouponChange(coupon: Coupon, patch: CouponPatch, now: Date): PlannedChange {
  const ended = now >= coupon.issueEndsAt
  const started = now >= coupon.issueStartsAt
  const steersSale = Object.keys(patch).some((field) => field !== 'name')
  if (ended && steersSale) {
    throw new AppError('SALE_ENDED', `the sale ended at ${coupon.issueEndsAt.toISOString()}`)
  }
  if (patch.issueStartsAt !== undefined && patch.issueStartsAt.getTime() !== coupon.issueStartsAt.getTime()) {
    if (started) {
      throw new AppError('SALE_STARTED', `the sale started at ${coupon.issueStartsAt.toISOString()}`)
    }
    if (patch.issueStartsAt < now) throw new AppError('VALIDATION_ERROR', 'issueStartsAt is in the past')
  }
  if (patch.quantity !== undefined && patch.quantity < coupon.quantity) {
    throw new AppError(
      'QUANTITY_DECREASE',
      `quantity can only grow (now ${coupon.quantity}): units may already be promised`,
    )
  }
  const issueEndsAt =
    patch.issueEndsAt === undefined
      ? coupon.issueEndsAt
      : new Date(Math.max(patch.issueEndsAt.getTime(), now.getTime()))
  const updated: Coupon = {
    ...coupon,
    name: patch.name ?? coupon.name,
    issueStartsAt: patch.issueStartsAt ?? coupon.issueStartsAt,
    issueEndsAt,
    quantity: patch.quantity ?? coupon.quantity,
    paused: patch.paused ?? coupon.paused,
  }
  checkNewCoupon(updated)
  return { updated, change: changeRecord(coupon, updated), addedStock: updated.quantity - coupon.quantity }
}

function changeRecord(before: Coupon, after: Coupon): ChangeRecord {
  const change: ChangeRecord = {}
  const view = (coupon: Coupon): Record<Steerable, Value> => ({
    name: coupon.name,
    issueStartsAt: coupon.issueStartsAt.toISOString(),
    issueEndsAt: coupon.issueEndsAt.toISOString(),
    quantity: coupon.quantity,
    paused: coupon.paused,
  })
  const from = view(before)
  const to = view(after)
  for (const field of Object.keys(from) as Steerable[]) {
    if (from[field] !== to[field]) change[field] = { from: from[field], to: to[field] }
  }
  return change
}
