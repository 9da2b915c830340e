import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { userCouponService } from '../../user-coupons/service.ts'
import { EventStreamQuery, errors, Id, Issuance, RedeemBody, Redemption, UserCoupon } from '../schemas.ts'
import { openEventStream } from '../sse.ts'

export const meRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.authenticateUser)
  const security = [{ userToken: [] }]
  const userCoupons = userCouponService(app.db)

  app.get(
    '/me/coupons',
    {
      schema: {
        tags: ['me'],
        summary: "The caller's coupons",
        security,
        response: { 200: Type.Array(UserCoupon), ...errors(401, 503) },
      },
    },
    async (request) =>
      (await userCoupons.list(request.userId)).map((coupon) => ({
        id: coupon.id,
        couponId: coupon.couponId,
        name: coupon.name,
        discount: coupon.discount,
        issuedAt: coupon.issuedAt.toISOString(),
        expiresAt: coupon.expiresAt.toISOString(),
        redeemedAt: coupon.redeemedAt?.toISOString() ?? null,
        status: coupon.status,
      })),
  )

  app.post(
    '/me/coupons/:userCouponId/redeem',
    {
      schema: {
        tags: ['me'],
        summary: 'Redeem one of the caller’s coupons against an order (once)',
        security,
        params: Type.Object({ userCouponId: Id }, { additionalProperties: false }),
        body: RedeemBody,
        response: { 200: Redemption, ...errors(400, 401, 404, 409, 410, 413, 415, 503) },
      },
    },
    async (request) => {
      const redemption = await userCoupons.redeem(
        request.userId,
        request.params.userCouponId,
        request.body.orderAmount,
      )
      return { ...redemption, redeemedAt: redemption.redeemedAt.toISOString() }
    },
  )

  app.get(
    '/me/events',
    {
      config: { eventStream: true },
      schema: {
        tags: ['me'],
        summary: 'Server-Sent Events: an `issuance` event when one of the caller’s requests is decided',
        description: 'EventSource cannot send headers: pass the JWT as `access_token`.',
        security,
        querystring: EventStreamQuery,
        response: {
          200: {
            description: 'text/event-stream of `issuance` events',
            content: { 'text/event-stream': { schema: Issuance } },
          },
          ...errors(401, 503),
        },
      },
    },
    async (request, reply) => {
      const stream = openEventStream(request, reply, { owner: request.userId })
      const unsubscribe = app.decisions.subscribe(request.userId, (issuance) =>
        stream.send('issuance', issuance),
      )
      stream.send('ready', { userId: request.userId })
      await stream.closed
      unsubscribe()
    },
  )
}
