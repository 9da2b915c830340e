import { createChallenge, extractParams, verifySolution } from 'altcha-lib/v1'
import type { Challenge, Payload } from 'altcha-lib/v1/types'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Counter } from 'prom-client'
import type { Config } from '../../config/config.ts'
import { assertIssuing, type Coupon } from '../../domain/coupon.ts'
import { AppError } from '../../domain/errors.ts'
import { challengeParams, misboundSolution, replayRecordTtlMs } from '../../domain/proof-of-work.ts'
import type { IssuanceService } from '../../issuance/service/issuance-service.ts'
import { redisNowMs } from '../../redis/client.ts'
import { proofOfWorkKey } from '../../redis/keys.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The per-coupon proof of work (ALTCHA): challenges, and the check on `POST /coupons/{id}/issuance`. */
    proofOfWork: {
      /** A challenge for this user and coupon, from the moment the coupon issues; 404 if it asks for none. */
      challenge(coupon: Coupon, userId: string): Promise<Challenge>
      /**
       * Refuses a request for a coupon with proof of work that carries no valid, unused solution. Undefined (no
       * promise) for a coupon that asks for none.
       */
      check(coupon: Coupon, request: FastifyRequest): Promise<void> | undefined
    }
  }
}

/** The request header carrying the solution: the ALTCHA widget's payload, base64 of its JSON. */
export const SOLUTION_HEADER = 'altcha'
/** How long this process trusts what it read of a coupon's stock (sold out or not) before reading it again. */
const STOCK_CHECK_EVERY_MS = 1_000

type Outcome = 'verified' | 'missing' | 'invalid' | 'replayed' | 'skippedSoldOut'

function decodePayload(header: string): Payload | undefined {
  try {
    const payload = JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as Partial<Payload> | null
    if (
      typeof payload?.salt !== 'string' ||
      typeof payload.challenge !== 'string' ||
      typeof payload.signature !== 'string' ||
      typeof payload.algorithm !== 'string' ||
      !Number.isSafeInteger(payload.number)
    )
      return undefined
    return payload as Payload
  } catch {
    return undefined
  }
}

/**
 * Once a coupon's stock is gone nothing is left to ration: its requests skip the check (no verification, no
 * Redis call of ours), so a 410 costs what it costs without proof of work. The stock is read at most once a
 * second per coupon and process (stock that came back is rationed again within a second).
 */
function stockReader(issuance: IssuanceService): (coupon: Coupon, nowMs: number) => Promise<boolean> {
  /** Coupon id -> whether its stock was gone when last read, and until when that reading holds. */
  const readings = new Map<number, { soldOut: Promise<boolean>; untilMs: number }>()
  return (coupon, nowMs) => {
    let reading = readings.get(coupon.id)
    if (reading === undefined || reading.untilMs <= nowMs) {
      if (readings.size >= 10_000) readings.clear()
      const soldOut = issuance
        .modeOf(coupon)
        .remaining(coupon)
        .then((remaining) => remaining <= 0)
      // A failed read is not remembered: the next request reads again.
      soldOut.catch(() => readings.delete(coupon.id))
      reading = { soldOut, untilMs: nowMs + STOCK_CHECK_EVERY_MS }
      readings.set(coupon.id, reading)
    }
    return reading.soldOut
  }
}

/**
 * Proof of work per coupon (ALTCHA v1 challenges, `altcha-lib` on the server). A challenge is handed out only
 * once the coupon issues, bound by its signed salt to the coupon, the user and an expiry
 * (POW_CHALLENGE_TTL_MS); a solution is spent once across every process: its challenge is recorded in Redis
 * (SET NX, under the coupon's hash tag, until the challenge expires), so a replay is refused.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const { hmacKey, challengeTtlMs } = config.proofOfWork
    const checked = new Counter({
      name: 'coupon_proof_of_work_total',
      help: 'Issuance requests for coupons with proof of work, by what the check found',
      labelNames: ['outcome'] as const,
      registers: [app.metrics.registry],
    })
    const count = (outcome: Outcome) => checked.labels(outcome).inc()
    const knownSoldOut = stockReader(app.issuance)

    async function spend(coupon: Coupon, userId: string, header: string | string[] | undefined) {
      if (typeof header !== 'string' || header === '') {
        count('missing')
        throw new AppError(
          'PROOF_OF_WORK_REQUIRED',
          `solve GET /coupons/${coupon.id}/challenge and send it in the "${SOLUTION_HEADER}" header`,
        )
      }
      const payload = decodePayload(header)
      const params = payload === undefined ? {} : extractParams(payload)
      const wrong =
        payload === undefined || !(await verifySolution(payload, hmacKey))
          ? 'the solution does not solve a challenge of this service, or it expired'
          : misboundSolution(params, coupon.id, userId, Date.now())
      if (wrong !== undefined) {
        count('invalid')
        throw new AppError('PROOF_OF_WORK_INVALID', wrong)
      }
      const key = proofOfWorkKey(config.redisPrefix, coupon.id, payload!.challenge)
      const first = await app.redis.set(key, '1', 'PX', replayRecordTtlMs(params, Date.now()), 'NX')
      if (first === null) {
        count('replayed')
        throw new AppError('PROOF_OF_WORK_REPLAYED', 'ask GET /coupons/{id}/challenge for a new challenge')
      }
      count('verified')
    }

    app.decorate('proofOfWork', {
      async challenge(coupon: Coupon, userId: string): Promise<Challenge> {
        if (coupon.proofOfWork === null)
          throw new AppError('NO_PROOF_OF_WORK', `coupon ${coupon.id} asks for no proof of work`)
        // None before the start (on Redis's clock, as the admission decides), so none is solved in advance.
        assertIssuing(coupon, new Date(await redisNowMs(app.redis)))
        const now = new Date()
        return createChallenge({
          hmacKey,
          maxNumber: coupon.proofOfWork.maxNumber,
          expires: new Date(now.getTime() + challengeTtlMs),
          params: challengeParams(coupon.id, userId),
        })
      },
      check(coupon: Coupon, request: FastifyRequest): Promise<void> | undefined {
        if (coupon.proofOfWork === null) return undefined
        return knownSoldOut(coupon, Date.now()).then((soldOut) => {
          if (!soldOut) return spend(coupon, request.userId, request.headers[SOLUTION_HEADER])
          count('skippedSoldOut')
          return undefined
        })
      },
    })
  },
  { name: 'proof-of-work', dependencies: ['redis', 'metrics', 'issuance'] },
)
