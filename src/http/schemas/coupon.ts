import { type Static, Type } from 'typebox'
import * as domain from '../../domain/coupon.ts'
import { NewCouponFields } from '../../domain/coupon.ts'
import { Discount } from '../../domain/discount.ts'
import { agrees, type Same } from './common.ts'

export const IssueMode = NewCouponFields.properties.issueMode
const CouponStatus = Type.Enum(domain.COUPON_STATUSES)

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
export const couponViewFields = {
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
