import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errors, IdParams } from '../schemas/common.ts'

const ReceiptKey = Type.Object({
  kty: Type.String(),
  crv: Type.String(),
  x: Type.String({ description: 'base64url Ed25519 public key' }),
})

const OrderLog = Type.Object({
  couponId: Type.Integer(),
  salt: Type.String({ description: 'hex; each user appears as hex SHA-256(salt || userId)' }),
  prequeueOrder: Type.Union([Type.Literal('arrival'), Type.Literal('shuffle'), Type.Null()]),
  seed: Type.Union([Type.String({ description: 'hex shuffle seed' }), Type.Null()]),
  entries: Type.Array(
    Type.Object({
      userHash: Type.String(),
      position: Type.Union([Type.Integer(), Type.Null()]),
      outcome: Type.Union([Type.Literal('ISSUED'), Type.Literal('SOLD_OUT')]),
      prequeuePlace: Type.Union([Type.Integer(), Type.Null()]),
      shuffleKey: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
})

/** Public routes that let anyone check the order: the receipt key and, after the sale, the order log. */
export const fairnessRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/.well-known/coupon-rush-receipt-key',
    {
      schema: {
        tags: ['fairness'],
        summary: 'The Ed25519 public key of the issuance receipts (JWK)',
        response: { 200: ReceiptKey },
      },
    },
    async () => app.receipts.publicJwk(),
  )

  app.get(
    '/coupons/:id/order-log',
    {
      preHandler: app.limits.unknownCoupon,
      schema: {
        tags: ['fairness'],
        summary: 'After the sale: every position with a salted hash of the user and the outcome',
        params: IdParams,
        response: { 200: OrderLog, ...errors(400, 404, 422, 503) },
      },
    },
    async (request) => {
      const coupon = await app.issuance.get(request.params.id)
      return app.orderLogs.of(coupon, app.issuance.modeOf(coupon))
    },
  )
}
