/**
 * Pure rules of redemption following the shop's order: redeeming a user coupon against an order (a retried
 * call with the same order id gets its first answer again) and cancelling it when the order is refunded.
 * No I/O: the caller reads the coupon's redemptions under a row lock and applies the decision.
 */
import { type Discount, discountFor } from './discount.ts'
import { AppError } from './errors.ts'

/** One redemption of a user coupon, live (`cancelledAt` null) or cancelled. */
export interface RedemptionRecord {
  /** null only for redemptions made before order ids existed. */
  orderId: string | null
  orderAmount: number
  discountAmount: number
  redeemedAt: Date
  cancelledAt: Date | null
}

export interface Order {
  orderId: string
  orderAmount: number
}

/** What the rules need to know about the user coupon being redeemed. */
export interface RedeemableCoupon {
  discount: Discount
  minOrderAmount: number | null
  expiresAt: Date
}

/** The redemptions that matter to one call: the coupon's live one, and the latest one of the call's order. */
export interface RedemptionsOf {
  live: RedemptionRecord | undefined
  ofOrder: RedemptionRecord | undefined
}

export type RedeemDecision =
  | { kind: 'replay'; redemption: RedemptionRecord }
  | { kind: 'redeem'; discountAmount: number }

export type CancelDecision =
  | { kind: 'replay'; redemption: RedemptionRecord }
  | { kind: 'cancel'; redemption: RedemptionRecord }

/**
 * Redeem: the same order again gets its first answer (unless its amount differs: ORDER_MISMATCH); an order
 * whose redemption was cancelled cannot redeem again (a late retry must not re-use a refunded order);
 * another order on a redeemed coupon is ALREADY_REDEEMED; then expiry, then the minimum order amount.
 */
export function decideRedeem(
  coupon: RedeemableCoupon,
  { live, ofOrder }: RedemptionsOf,
  order: Order,
  now: Date,
): RedeemDecision {
  if (live !== undefined && live.orderId === order.orderId) {
    if (live.orderAmount !== order.orderAmount) {
      throw new AppError(
        'ORDER_MISMATCH',
        `order ${order.orderId} redeemed this coupon with orderAmount ${live.orderAmount}, not ${order.orderAmount}`,
      )
    }
    return { kind: 'replay', redemption: live }
  }
  if (ofOrder?.cancelledAt != null) {
    throw new AppError(
      'REDEMPTION_CANCELLED',
      `the redemption by order ${order.orderId} was cancelled at ${ofOrder.cancelledAt.toISOString()}; redeem with a new order id`,
    )
  }
  if (live !== undefined) {
    throw new AppError('ALREADY_REDEEMED', `redeemed at ${live.redeemedAt.toISOString()} by another order`)
  }
  if (coupon.expiresAt <= now) {
    throw new AppError('COUPON_EXPIRED', `expired at ${coupon.expiresAt.toISOString()}`)
  }
  if (coupon.minOrderAmount !== null && order.orderAmount < coupon.minOrderAmount) {
    throw new AppError(
      'ORDER_BELOW_MINIMUM',
      `this coupon needs an order of at least ${coupon.minOrderAmount}, got ${order.orderAmount}`,
      { extra: { minOrderAmount: coupon.minOrderAmount } },
    )
  }
  return { kind: 'redeem', discountAmount: discountFor(coupon.discount, order.orderAmount) }
}

/**
 * Cancel (order refunded): an order already cancelled gets its first answer again; the live redemption of
 * this order is cancelled; a live redemption of another order is ORDER_MISMATCH; nothing to cancel is
 * NOT_REDEEMED. Expiry does not matter: an expired coupon's redemption is cancelled and it stays EXPIRED.
 */
export function decideCancel({ live, ofOrder }: RedemptionsOf, orderId: string): CancelDecision {
  if (ofOrder?.cancelledAt != null) return { kind: 'replay', redemption: ofOrder }
  if (live !== undefined && live.orderId === orderId) return { kind: 'cancel', redemption: live }
  if (live !== undefined) {
    throw new AppError('ORDER_MISMATCH', `this coupon is redeemed by another order, not by ${orderId}`)
  }
  throw new AppError('NOT_REDEEMED', `this coupon holds no redemption by order ${orderId}`)
}
