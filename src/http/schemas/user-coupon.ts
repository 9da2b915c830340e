import { Type } from 'typebox'
import { Discount, MAX_AMOUNT } from '../../domain/discount.ts'
import { USER_COUPON_STATUSES } from '../../domain/user-coupon.ts'

/** The coupons a user holds, and redeeming one against an order (the /me routes). */

const UserCouponStatus = Type.Enum(USER_COUPON_STATUSES)

export const UserCoupon = Type.Object({
  id: Type.Integer(),
  couponId: Type.Integer(),
  name: Type.String(),
  discount: Discount,
  issuedAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  minOrderAmount: Type.Union([Type.Integer(), Type.Null()]),
  redeemedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  orderId: Type.Union([Type.String(), Type.Null()], { description: 'the order of the current redemption' }),
  orderAmount: Type.Union([Type.Integer(), Type.Null()]),
  discountAmount: Type.Union([Type.Integer(), Type.Null()]),
  cancelledAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'when the last redemption was cancelled (null once redeemed again)',
  }),
  status: UserCouponStatus,
})

/** A shop's order id: the key that makes redeem and cancel idempotent. */
const OrderId = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\u0000]*$',
  description: "the shop's order id: 1-100 characters, no NUL",
})

export const RedeemBody = Type.Object(
  { orderId: OrderId, orderAmount: Type.Integer({ minimum: 1, maximum: MAX_AMOUNT }) },
  { additionalProperties: false },
)

export const Redemption = Type.Object({
  orderId: Type.String(),
  orderAmount: Type.Integer(),
  discountAmount: Type.Integer(),
  payAmount: Type.Integer(),
  redeemedAt: Type.String({ format: 'date-time' }),
})

export const CancelRedemptionBody = Type.Object({ orderId: OrderId }, { additionalProperties: false })

export const RedemptionCancellation = Type.Object({
  orderId: Type.String(),
  redeemedAt: Type.String({ format: 'date-time' }),
  cancelledAt: Type.String({ format: 'date-time' }),
  status: UserCouponStatus,
})
