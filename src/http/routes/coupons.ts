import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import type { Config } from '../../config/config.ts'
import type { IssueMode } from '../../domain/coupon.ts'
import { AppError, ERROR_CODES } from '../../domain/errors.ts'
import type { RequestOutcome } from '../../issuance/core/mode.ts'
import { problem } from '../plugins/errors.ts'
import { errors, IdParams, Issuance, PublicCoupon } from '../schemas.ts'

type Refusal = 'ALREADY_REQUESTED' | 'SOLD_OUT'

/** The bodies of the plain refusals, serialized once: a sold-out sale answers little else. */
const REFUSAL_BODIES: Record<Refusal, string> = {
  ALREADY_REQUESTED: JSON.stringify(problem('ALREADY_REQUESTED', ERROR_CODES.ALREADY_REQUESTED.title)),
  SOLD_OUT: JSON.stringify(problem('SOLD_OUT', ERROR_CODES.SOLD_OUT.title)),
}

/** The refusals a request expects (most answers of a flash sale), answered without an error object. */
function refuse(reply: FastifyReply, code: Refusal, extra?: Record<string, unknown>) {
  // A string body is sent as it is (no serializer).
  return reply
    .code(ERROR_CODES[code].status)
    .type('application/problem+json')
    .send(extra === undefined ? REFUSAL_BODIES[code] : problem(code, ERROR_CODES[code].title, extra))
}

export const couponRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app) => {
  const security = [{ userToken: [] }]
  /** The mode of the coupon a request is for, once found (for counting failures by mode). */
  const issuingMode = new WeakMap<object, IssueMode>()

  app.get(
    '/coupons/:id',
    {
      preHandler: app.limits.unknownCoupon,
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
      // A failure after the coupon was found (outside its window, mode disabled, a dependency away) is
      // counted as an outcome too; the error handler answers it.
      onError: async (request, _reply, error) => {
        const mode = issuingMode.get(request)
        if (mode !== undefined)
          app.metrics.countOutcome(mode, error instanceof AppError ? error.code : 'ERROR')
      },
      config: {
        // The hot path: security headers guard what a browser renders or loads, and nothing renders or
        // loads the answer to a POST; skipping them spares every admission their bytes.
        securityHeaders: false,
      },
      preHandler: [app.limits.issuancePerUser, app.limits.unknownCoupon],
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
      issuingMode.set(request, coupon.issueMode)
      const outcome = await app.issuance.request(coupon, request.userId)
      return answer(reply, coupon.issueMode, outcome)
    },
  )

  /** The outcome as HTTP: 201/202 with the issuance, 409 with the user's current issuance, 410. */
  function answer(reply: FastifyReply, mode: IssueMode, outcome: RequestOutcome) {
    switch (outcome.kind) {
      case 'admitted':
        app.metrics.countOutcome(mode, outcome.issuance.status)
        return reply.code(outcome.httpStatus).send(outcome.issuance)
      case 'alreadyRequested':
        app.metrics.countOutcome(mode, 'ALREADY_REQUESTED')
        return refuse(reply, 'ALREADY_REQUESTED', outcome.issuance && { issuance: outcome.issuance })
      case 'soldOut':
        app.metrics.countOutcome(mode, 'SOLD_OUT')
        return refuse(reply, 'SOLD_OUT')
    }
  }

  app.get(
    '/coupons/:id/issuance',
    {
      onRequest: app.authenticateUser,
      preHandler: [app.limits.statusReadsPerUser, app.limits.unknownCoupon],
      schema: {
        tags: ['coupons'],
        summary: "The caller's request for this coupon and its decision",
        security,
        params: IdParams,
        response: { 200: Issuance, ...errors(400, 401, 404, 429, 503) },
      },
    },
    async (request) => app.issuance.status(request.params.id, request.userId),
  )
}
