import { type Static, Type } from 'typebox'
import {
  CouponName,
  CouponStats,
  couponViewFields,
  Discount,
  IssueMode,
  MAX_AMOUNT,
  Quantity,
  UserCouponStatus,
  ValidDays,
} from '../domain/coupon.ts'

/** TypeBox schemas: one source for request validation, handler types and the OpenAPI document. */

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.String(),
  },
  {
    additionalProperties: true,
    $id: 'Problem',
    description: 'RFC 9457 problem details with a stable `code`',
  },
)

export { CouponStats, Discount, Issuance, IssueMode, PublicCoupon } from '../domain/coupon.ts'

/** Ids in paths and queries: canonical decimal integers (see plugins/validation.ts) within JS's safe range. */
export const Id = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })

export const CreateCouponBody = Type.Object(
  {
    name: CouponName,
    discount: Discount,
    quantity: Quantity,
    issueStartsAt: Type.String({ format: 'date-time' }),
    issueEndsAt: Type.String({ format: 'date-time' }),
    validDays: Type.Optional(ValidDays),
    validUntil: Type.Optional(Type.String({ format: 'date-time', description: 'must be after issueEndsAt' })),
    issueMode: Type.Optional(IssueMode),
  },
  { additionalProperties: false },
)
export type CreateCouponBody = Static<typeof CreateCouponBody>

export const AdminCoupon = Type.Object({
  ...couponViewFields,
  validDays: Type.Union([Type.Integer(), Type.Null()]),
  validUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  stats: Type.Optional(CouponStats),
})

export const UserCoupon = Type.Object({
  id: Type.Integer(),
  couponId: Type.Integer(),
  name: Type.String(),
  discount: Discount,
  issuedAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  redeemedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  status: UserCouponStatus,
})

export const RedeemBody = Type.Object(
  { orderAmount: Type.Integer({ minimum: 1, maximum: MAX_AMOUNT }) },
  { additionalProperties: false },
)

export const Redemption = Type.Object({
  discountAmount: Type.Integer(),
  payAmount: Type.Integer(),
  redeemedAt: Type.String({ format: 'date-time' }),
})

export const Audit = Type.Object({
  quantity: Type.Integer(),
  issuedRows: Type.Integer(),
  duplicateRows: Type.Integer(),
  overIssued: Type.Integer(),
  acceptedNotYetIssued: Type.Integer(),
  deadLettered: Type.Integer(),
  inconsistencies: Type.Array(Type.String()),
})

export const IdParams = Type.Object({ id: Id }, { additionalProperties: false })

/** The query of the SSE routes: EventSource cannot send headers, so the token may come here (only there). */
export const EventStreamQuery = Type.Object(
  { access_token: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })) },
  { additionalProperties: false },
)

/** Error responses documented on every route that can give them. */
export function errors(...statuses: number[]) {
  return Object.fromEntries(statuses.map((status) => [status, Type.Ref('Problem')]))
}
