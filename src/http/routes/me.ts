import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { userCouponService } from '../../user-coupons/service.ts'
import { EventStreamQuery, errors, Id } from '../schemas/common.ts'
import { Issuance } from '../schemas/issuance.ts'
import {
  CancelRedemptionBody,
  RedeemBody,
  Redemption,
  RedemptionCancellation,
  UserCoupon,
} from '../schemas/user-coupon.ts'
import { openEventStream } from '../sse.ts'

type App = Parameters<FastifyPluginAsyncTypebox>[0]
type UserCoupons = ReturnType<typeof userCouponService>

const security = [{ userToken: [] }]
const UserCouponParams = Type.Object({ userCouponId: Id }, { additionalProperties: false })

/** The caller's own routes: their coupons, redeeming and cancelling, and their decisions as events. */
export const meRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.authenticateUser)
  const userCoupons = userCouponService(app.db)
  listRoute(app, userCoupons)
  redemptionRoutes(app, userCoupons)
  eventsRoute(app)
}

function listRoute(app: App, userCoupons: UserCoupons): void {
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
        minOrderAmount: coupon.minOrderAmount,
        redeemedAt: coupon.redeemedAt?.toISOString() ?? null,
        orderId: coupon.orderId,
        orderAmount: coupon.orderAmount,
        discountAmount: coupon.discountAmount,
        cancelledAt: coupon.cancelledAt?.toISOString() ?? null,
        status: coupon.status,
      })),
  )
}

function redemptionRoutes(app: App, userCoupons: UserCoupons): void {
  app.post(
    '/me/coupons/:userCouponId/redeem',
    {
      schema: {
        tags: ['me'],
        summary:
          'Redeem one of the caller’s coupons against an order (once; the same order again: same answer)',
        security,
        params: UserCouponParams,
        body: RedeemBody,
        response: { 200: Redemption, ...errors(400, 401, 404, 409, 410, 413, 415, 422, 503) },
      },
    },
    async (request) => {
      const redemption = await userCoupons.redeem(request.userId, request.params.userCouponId, request.body)
      return { ...redemption, redeemedAt: redemption.redeemedAt.toISOString() }
    },
  )

  app.post(
    '/me/coupons/:userCouponId/redemption/cancel',
    {
      schema: {
        tags: ['me'],
        summary: 'Cancel the redemption by an order (refunded): the coupon is usable again unless expired',
        security,
        params: UserCouponParams,
        body: CancelRedemptionBody,
        response: { 200: RedemptionCancellation, ...errors(400, 401, 404, 409, 413, 415, 503) },
      },
    },
    async (request) => {
      const cancellation = await userCoupons.cancelRedemption(
        request.userId,
        request.params.userCouponId,
        request.body.orderId,
      )
      return {
        ...cancellation,
        redeemedAt: cancellation.redeemedAt.toISOString(),
        cancelledAt: cancellation.cancelledAt.toISOString(),
      }
    },
  )
}

function eventsRoute(app: App): void {
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
