import { type Static, Type } from 'typebox'
import * as domain from '../domain/coupon.ts'
import { NewCouponFields } from '../domain/coupon.ts'
import { Discount, MAX_AMOUNT } from '../domain/discount.ts'
import { ISSUANCE_STATUSES } from '../domain/issuance.ts'
import { ProofOfWork } from '../domain/proof-of-work.ts'
import { USER_COUPON_STATUSES } from '../domain/user-coupon.ts'

/**
 * TypeBox schemas: one source for request validation, handler types and the OpenAPI document. The views
 * that have a domain type beside them are checked against it when the code compiles (`agrees` below).
 */

/** Compiles only when the view schema's type and the domain type are the same (both ways assignable). */
type Same<View, Domain> = [View] extends [Domain] ? ([Domain] extends [View] ? true : false) : false
function agrees<_ extends true>(): void {}

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

export { Discount }

export const IssueMode = NewCouponFields.properties.issueMode
export const CouponStatus = Type.Enum(domain.COUPON_STATUSES)
export const UserCouponStatus = Type.Enum(USER_COUPON_STATUSES)
export const IssuanceStatus = Type.Enum(ISSUANCE_STATUSES)

/** What the service signed about one admission (docs/api.md "Receipts"). */
export const Receipt = Type.Object({
  couponId: Type.Integer(),
  userId: Type.String(),
  position: Type.Optional(Type.Integer()),
  prequeuePlace: Type.Optional(Type.Integer()),
  redisTimeMs: Type.Integer(),
  status: IssuanceStatus,
  signature: Type.String({
    description: 'base64url Ed25519 signature of the canonical JSON of the other fields',
  }),
})
agrees<Same<Static<typeof Receipt>, domain.Receipt>>()

/** The request/decision state of one user for one coupon (GET /coupons/{id}/issuance). */
export const Issuance = Type.Object({
  couponId: Type.Integer(),
  userId: Type.String(),
  status: IssuanceStatus,
  position: Type.Optional(Type.Integer()),
  prequeuePlace: Type.Optional(Type.Integer({ description: 'WAITING: arrival number in the pre-queue' })),
  startsAt: Type.Optional(
    Type.String({ format: 'date-time', description: 'WAITING: when the pre-queued are admitted' }),
  ),
  userCouponId: Type.Optional(Type.Integer()),
  requestedAt: Type.String({ format: 'date-time' }),
  decidedAt: Type.Optional(Type.String({ format: 'date-time' })),
  ahead: Type.Optional(Type.Integer({ description: 'status reads: undecided requests before this one' })),
  estimatedWaitMs: Type.Optional(
    Type.Integer({ description: 'status reads (queue, pre-queue): from the measured drain rate' }),
  ),
  pollAfterMs: Type.Optional(Type.Integer({ description: 'status reads: when to ask again' })),
  receipt: Type.Optional(Receipt),
})
agrees<Same<Static<typeof Issuance>, domain.Issuance>>()

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
agrees<Same<Static<typeof CouponStats>, domain.CouponStats>>()

/** The fields every view of a coupon shows (the public one and the admin one). */
const couponViewFields = {
  id: Type.Integer(),
  name: Type.String(),
  discount: Discount,
  quantity: Type.Integer(),
  issueStartsAt: Type.String({ format: 'date-time' }),
  issueEndsAt: Type.String({ format: 'date-time' }),
  issueMode: IssueMode,
  proofOfWork: Type.Optional(
    Type.Object(
      { maxNumber: Type.Integer() },
      { description: 'present when each issuance request must carry a solved challenge' },
    ),
  ),
  minOrderAmount: Type.Union([Type.Integer(), Type.Null()], {
    description: 'the least order amount it redeems against; null: any',
  }),
}

export const PrequeueOrder = Type.Enum(domain.PREQUEUE_ORDERS, {
  description: 'arrival: as they came; shuffle: sorted by HMAC-SHA256(seed, userId), hex ascending',
})

/** A coupon as shoppers see it (GET /coupons/{id}). */
export const PublicCoupon = Type.Object({
  ...couponViewFields,
  remaining: Type.Integer(),
  status: CouponStatus,
  prequeueStartsAt: Type.Optional(Type.String({ format: 'date-time' })),
  prequeueOrder: Type.Optional(PrequeueOrder),
  seedCommitment: Type.Optional(Type.String({ description: 'hex SHA-256 of the shuffle seed' })),
  seed: Type.Optional(Type.String({ description: 'hex shuffle seed, revealed from issueStartsAt' })),
  prequeueLength: Type.Optional(Type.Integer({ description: 'how many wait in the pre-queue now' })),
})
agrees<Same<Static<typeof PublicCoupon>, domain.PublicCoupon>>()

/** An ALTCHA (v1) challenge, as the ALTCHA widget's `challengeurl` expects it (GET /coupons/{id}/challenge). */
export const PowChallenge = Type.Object({
  algorithm: Type.String({ description: 'SHA-256' }),
  challenge: Type.String({ description: 'hex SHA-256 of salt + the secret number' }),
  maxnumber: Type.Optional(Type.Integer({ description: 'the secret number is at most this' })),
  salt: Type.String({ description: 'random, then the coupon, the user and `expires` (Unix seconds)' }),
  signature: Type.String({ description: 'HMAC of `challenge` with POW_HMAC_KEY' }),
})

/** Ids in paths and queries: canonical decimal integers (see plugins/validation.ts) within JS's safe range. */
export const Id = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })

/** The days a coupon stays usable: the non-null branch of the rule (the request omits it instead). */
const ValidDays = NewCouponFields.properties.validDays.anyOf[0]

export const CreateCouponBody = Type.Object(
  {
    name: NewCouponFields.properties.name,
    discount: Discount,
    quantity: NewCouponFields.properties.quantity,
    issueStartsAt: Type.String({ format: 'date-time' }),
    issueEndsAt: Type.String({ format: 'date-time' }),
    validDays: Type.Optional(ValidDays),
    validUntil: Type.Optional(Type.String({ format: 'date-time', description: 'must be after issueEndsAt' })),
    issueMode: Type.Optional(IssueMode),
    proofOfWork: Type.Optional({
      ...ProofOfWork,
      description: 'each issuance request must carry a solved ALTCHA challenge (GET /coupons/{id}/challenge)',
    }),
    minOrderAmount: Type.Optional(NewCouponFields.properties.minOrderAmount.anyOf[0]),
    prequeueStartsAt: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'opens a pre-queue (stream, queue, kafka); before issueStartsAt',
      }),
    ),
    prequeueOrder: Type.Optional(PrequeueOrder),
  },
  { additionalProperties: false },
)
export type CreateCouponBody = Static<typeof CreateCouponBody>

export const AdminCoupon = Type.Object({
  ...couponViewFields,
  validDays: Type.Union([Type.Integer(), Type.Null()]),
  validUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  paused: Type.Boolean({ description: 'issuance refused with ISSUE_PAUSED while true' }),
  stats: Type.Optional(CouponStats),
})

/** PATCH /admin/coupons/{id}: any of the steerable fields (which change is allowed when: docs/api.md). */
export const PatchCouponBody = Type.Object(
  {
    name: Type.Optional(NewCouponFields.properties.name),
    issueStartsAt: Type.Optional(
      Type.String({ format: 'date-time', description: 'only before the sale starts, not in the past' }),
    ),
    issueEndsAt: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'later extends, earlier shortens; now or past ends it now',
      }),
    ),
    quantity: Type.Optional({ ...NewCouponFields.properties.quantity, description: 'can only grow' }),
    paused: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
)

/** The admin making a change, recorded in the coupon's history (the admin token names nobody). */
export const AdminNameHeaders = Type.Object({
  'x-admin-name': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[\\x20-\\x7e]+$',
      description: 'who makes the change, for the history; "admin" when absent',
    }),
  ),
})

const ChangedValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()])

/** One entry of GET /admin/coupons/{id}/history. */
export const CouponChange = Type.Object({
  id: Type.Integer(),
  couponId: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
  admin: Type.String(),
  change: Type.Record(
    Type.String(),
    Type.Union([Type.Object({ from: ChangedValue, to: ChangedValue }), Type.Boolean()]),
    { description: '{ field: { from, to } } for each field a PATCH changed; { deleted: true } for a DELETE' },
  ),
})

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
