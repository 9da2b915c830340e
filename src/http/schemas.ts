import { type Static, Type } from 'typebox'

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

export const Discount = Type.Union(
  [
    Type.Object(
      { type: Type.Literal('FIXED'), amount: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }) },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('RATE'),
        percent: Type.Integer({ minimum: 1, maximum: 100 }),
        maxAmount: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000 })),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'FIXED: a fixed amount off; RATE: a percentage off, optionally capped' },
)

export const IssueModeSchema = Type.Union([
  Type.Literal('sync'),
  Type.Literal('queue'),
  Type.Literal('stream'),
  Type.Literal('kafka'),
])

export const CreateCouponBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    discount: Discount,
    quantity: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
    issueStartsAt: Type.String({ format: 'date-time' }),
    issueEndsAt: Type.String({ format: 'date-time' }),
    validDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
    validUntil: Type.Optional(Type.String({ format: 'date-time' })),
    issueMode: Type.Optional(IssueModeSchema),
  },
  { additionalProperties: false },
)
export type CreateCouponBody = Static<typeof CreateCouponBody>

export const CouponStats = Type.Object({
  requested: Type.Integer(),
  accepted: Type.Integer(),
  pending: Type.Integer(),
  issued: Type.Integer(),
  soldOut: Type.Integer(),
  remaining: Type.Integer(),
})

export const AdminCoupon = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  discount: Discount,
  quantity: Type.Integer(),
  issueStartsAt: Type.String({ format: 'date-time' }),
  issueEndsAt: Type.String({ format: 'date-time' }),
  validDays: Type.Union([Type.Integer(), Type.Null()]),
  validUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  issueMode: IssueModeSchema,
  createdAt: Type.String({ format: 'date-time' }),
  stats: Type.Optional(CouponStats),
})

export const PublicCoupon = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  discount: Discount,
  quantity: Type.Integer(),
  remaining: Type.Integer(),
  status: Type.Union([
    Type.Literal('SCHEDULED'),
    Type.Literal('ISSUING'),
    Type.Literal('SOLD_OUT'),
    Type.Literal('ENDED'),
  ]),
  issueStartsAt: Type.String({ format: 'date-time' }),
  issueEndsAt: Type.String({ format: 'date-time' }),
  issueMode: IssueModeSchema,
})

export const Issuance = Type.Object({
  couponId: Type.Integer(),
  userId: Type.String(),
  status: Type.Union([
    Type.Literal('PENDING'),
    Type.Literal('ACCEPTED'),
    Type.Literal('ISSUED'),
    Type.Literal('SOLD_OUT'),
  ]),
  position: Type.Optional(Type.Integer()),
  userCouponId: Type.Optional(Type.Integer()),
  requestedAt: Type.String({ format: 'date-time' }),
  decidedAt: Type.Optional(Type.String({ format: 'date-time' })),
})

export const UserCoupon = Type.Object({
  id: Type.Integer(),
  couponId: Type.Integer(),
  name: Type.String(),
  discount: Discount,
  issuedAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  redeemedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  status: Type.Union([Type.Literal('AVAILABLE'), Type.Literal('REDEEMED'), Type.Literal('EXPIRED')]),
})

export const RedeemBody = Type.Object(
  { orderAmount: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }) },
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

export const IdParams = Type.Object({ id: Type.Integer({ minimum: 1, maximum: 9_007_199_254_740_991 }) })

/** Error responses documented on every route that can give them. */
export function errors(...statuses: number[]) {
  return Object.fromEntries(statuses.map((status) => [status, Type.Ref('Problem')]))
}
