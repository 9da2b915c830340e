import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Config } from '../../config/config.ts'
import { AppError } from '../../domain/errors.ts'
import { sendAppError } from '../plugins/errors.ts'
import { errors, IdParams, Issuance, PublicCoupon } from '../schemas.ts'

export const couponRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const security = [{ userToken: [] }]

  app.get(
    '/coupons/:id',
    {
      schema: {
        tags: ['coupons'],
        summary: 'A coupon as shoppers see it, with the stock left',
        params: IdParams,
        response: { 200: PublicCoupon, ...errors(400, 404, 503) },
      },
    },
    async (request) => app.issuance.publicView(request.params.id),
  )

  app.post(
    '/coupons/:id/issuance',
    {
      onRequest: app.authenticateUser,
      config: {
        // The hot path: security headers guard what a browser renders or loads, and nothing renders or
        // loads the answer to a POST; skipping them spares every admission their bytes.
        securityHeaders: false,
        rateLimit: {
          max: config.rateLimitPerUser.max,
          timeWindow: config.rateLimitPerUser.windowMs,
          hook: 'preHandler',
          keyGenerator: (request) => request.userId,
        },
      },
      schema: {
        tags: ['coupons'],
        summary: 'Request the coupon (FCFS); the answer depends on the coupon mode',
        description:
          'sync: 201 ISSUED. queue: 202 PENDING with position. stream/kafka: 202 ACCEPTED with position, or 410 at once.',
        security,
        params: IdParams,
        response: {
          201: Issuance,
          202: Issuance,
          ...errors(400, 401, 404, 409, 410, 422, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const coupon = await app.issuance.get(request.params.id)
      try {
        const answer = await app.issuance.request(coupon, request.userId)
        app.metrics.countOutcome(coupon.issueMode, answer.issuance.status)
        return reply.code(answer.httpStatus).send(answer.issuance)
      } catch (error) {
        const isAppError = error instanceof AppError
        app.metrics.countOutcome(coupon.issueMode, isAppError ? error.code : 'ERROR')
        if (isAppError && error.status < 500) return sendAppError(reply, error)
        throw error
      }
    },
  )

  app.get(
    '/coupons/:id/issuance',
    {
      onRequest: app.authenticateUser,
      schema: {
        tags: ['coupons'],
        summary: "The caller's request for this coupon and its decision",
        security,
        params: IdParams,
        response: { 200: Issuance, ...errors(400, 401, 404, 503) },
      },
    },
    async (request) => app.issuance.status(request.params.id, request.userId),
  )
}
