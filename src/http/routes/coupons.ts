import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import type { Config } from '../../config/config.ts'
import type { IssueMode } from '../../domain/coupon.ts'
import { AppError, ERROR_CODES } from '../../domain/errors.ts'
import type { RequestOutcome } from '../../issuance/core/mode.ts'
import { problem } from '../plugins/errors.ts'
import { SOLUTION_HEADER } from '../plugins/proof-of-work.ts'
import { errors, IdParams } from '../schemas/common.ts'
import { PowChallenge, PublicCoupon } from '../schemas/coupon.ts'
import { Issuance } from '../schemas/issuance.ts'

type App = Parameters<FastifyPluginAsyncTypebox<{ config: Config }>>[0]

const security = [{ userToken: [] }]

/** The issuance route's URL pattern (also its label in the latency metrics, which the sold-out door uses). */
export const ISSUANCE_ROUTE = '/coupons/:id/issuance'

type Refusal = 'ALREADY_REQUESTED' | 'SOLD_OUT'

/** The bodies of the plain refusals, serialized once: a sold-out sale answers little else. */
export const REFUSAL_BODIES: Record<Refusal, string> = {
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

/** The shoppers' routes: a coupon, its proof-of-work challenge, requesting it and reading the request. */
export const couponRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app) => {
  couponRoute(app)
  challengeRoute(app)
  issuanceRoute(app)
  statusRoute(app)
}

function couponRoute(app: App): void {
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
    async (request) => {
      const view = await app.issuance.publicView(request.params.id)
      const { proofOfWork } = await app.issuance.get(request.params.id)
      return proofOfWork === null ? view : { ...view, proofOfWork }
    },
  )
}

function challengeRoute(app: App): void {
  app.get(
    '/coupons/:id/challenge',
    {
      onRequest: app.authenticateUser,
      preHandler: app.limits.unknownCoupon,
      schema: {
        tags: ['coupons'],
        summary: 'A proof-of-work challenge for this user, for a coupon that asks for one',
        description: `An ALTCHA challenge, given only while the coupon issues, bound to the coupon, the user and an expiry (POW_CHALLENGE_TTL_MS). Solve it and send the ALTCHA payload (base64 of {algorithm, challenge, number, salt, signature}) in the \`${SOLUTION_HEADER}\` header of POST /coupons/{id}/issuance; it works once.`,
        security,
        params: IdParams,
        response: { 200: PowChallenge, ...errors(400, 401, 404, 422, 429, 503) },
      },
    },
    async (request) => app.proofOfWork.challenge(await app.issuance.get(request.params.id), request.userId),
  )
}

/** The hot path: one admission request, answered by the coupon's mode. */
function issuanceRoute(app: App): void {
  const getCoupon = (id: number) => app.issuance.get(id)
  app.post(
    ISSUANCE_ROUTE,
    {
      onRequest: app.authenticateUser,
      config: {
        // The hot path: security headers guard what a browser renders or loads, and nothing renders or
        // loads the answer to a POST; skipping them spares every admission their bytes.
        securityHeaders: false,
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
          ...errors(400, 401, 403, 404, 409, 410, 422, 429, 503),
        },
      },
    },
    // One handler instead of a preHandler chain: per request only the per-user limit, the coupon lookup (once),
    // the proof of work for a coupon that asks for one, then the mode.
    async (request, reply) => {
      const counted = app.limits.countIssuance(request)
      if (counted !== undefined) await counted
      const coupon = await app.limits.findCoupon(request.params.id, getCoupon)
      const checked = app.proofOfWork.check(coupon, request)
      if (checked !== undefined) await checked
      try {
        return answer(app, reply, coupon.issueMode, await app.issuance.request(coupon, request.userId))
      } catch (error) {
        // A failure once the coupon was found and its proof of work checked (outside its window, mode
        // disabled, a dependency away) is counted as an outcome too; the error handler answers it.
        app.metrics.countOutcome(coupon.issueMode, error instanceof AppError ? error.code : 'ERROR')
        throw error
      }
    },
  )
}

/** The outcome as HTTP: 201/202 with the issuance and its receipt, 409 with the user's current issuance, 410. */
async function answer(app: App, reply: FastifyReply, mode: IssueMode, outcome: RequestOutcome) {
  switch (outcome.kind) {
    case 'admitted': {
      app.metrics.countOutcome(mode, outcome.issuance.status)
      // Signed with the rest of this event-loop turn's receipts (one signature per turn).
      const receipt = await app.receipts.sign(outcome.issuance)
      return reply.code(outcome.httpStatus).send({ ...outcome.issuance, receipt })
    }
    case 'alreadyRequested':
      app.metrics.countOutcome(mode, 'ALREADY_REQUESTED')
      return refuse(reply, 'ALREADY_REQUESTED', outcome.issuance && { issuance: outcome.issuance })
    case 'soldOut':
      app.metrics.countOutcome(mode, 'SOLD_OUT')
      return refuse(reply, 'SOLD_OUT')
  }
}

function statusRoute(app: App): void {
  app.get(
    ISSUANCE_ROUTE,
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
    async (request) => {
      const issuance = await app.issuance.status(request.params.id, request.userId)
      const coupon = await app.issuance.get(request.params.id)
      return { ...issuance, ...(await app.waits.of(coupon, issuance)) }
    },
  )
}
