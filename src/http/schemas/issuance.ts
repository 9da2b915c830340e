import { type Static, Type } from 'typebox'
import type * as domain from '../../domain/coupon.ts'
import { ISSUANCE_STATUSES } from '../../domain/issuance.ts'
import { agrees, type Same } from './common.ts'

const IssuanceStatus = Type.Enum(ISSUANCE_STATUSES)

/** What the service signed about one admission (docs/api.md "Receipts"). */
const Receipt = Type.Object({
  couponId: Type.Integer(),
  userId: Type.String(),
  position: Type.Optional(Type.Integer()),
  prequeuePlace: Type.Optional(Type.Integer()),
  redisTimeMs: Type.Integer(),
  status: IssuanceStatus,
  nonce: Type.String({ description: 'random base64url: a leaf tells nothing about its neighbours' }),
  proof: Type.Array(Type.String({ pattern: '^[LR][A-Za-z0-9_-]{43}$' }), {
    description: "the leaf's path to the root: L or R (the sibling's side), then its base64url SHA-256",
  }),
  signature: Type.String({
    description: 'base64url Ed25519 signature of "coupon-rush-receipt-root:" followed by the 32 root bytes',
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
