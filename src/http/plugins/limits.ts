import type { FastifyRequest, preHandlerHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { Counter } from 'prom-client'
import type { Config, RateLimit } from '../../config/config.ts'
import type { Coupon } from '../../domain/coupon.ts'
import { AppError } from '../../domain/errors.ts'
import { channels } from '../../redis/keys.ts'
import { CouponMisses } from '../coupon-misses.ts'
import { SharedLimit } from '../shared-limit.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The per-user limits and the unknown-coupon memory: route hooks (after authentication), and plain calls. */
    limits: {
      /** RATE_LIMIT_PER_USER on `POST /coupons/{id}/issuance`: undefined when counted in memory, else a promise. */
      countIssuance(request: FastifyRequest): Promise<void> | undefined
      /** STATUS_LIMIT_PER_USER on `GET /coupons/{id}/issuance`. */
      statusReadsPerUser: preHandlerHookHandler
      /** 404 from memory for a coupon id looked up and not found in the last COUPON_MISS_TTL_MS. */
      unknownCoupon: preHandlerHookHandler
      /**
       * The coupon `find` gives for `id`, or 404 COUPON_NOT_FOUND: from memory for an id not found lately, else
       * looked up, a miss remembered (what `unknownCoupon` does, for a route that looks the coupon up itself).
       */
      findCoupon(id: number, find: (id: number) => Promise<Coupon>): Promise<Coupon>
      /**
       * For an issuance answered before routing (http/sold-out-door.ts): when the address limit and the
       * per-user issuance limit would both count this request in memory (no Redis call, no refusal), the
       * coupon id is not one remembered as unknown, and `answered()` then says the caller answers it, counts
       * the request in both and returns true. Otherwise counts nothing and returns false.
       */
      countIssuanceInMemory(
        address: string,
        userId: string,
        couponId: number,
        answered: () => boolean,
      ): boolean
    }
  }
}

type LimitName = 'address' | 'issuance' | 'status'

/** Ends a callback hook once a count is done: at once when it was counted in memory. */
function settle(counted: Promise<void> | undefined, done: (error?: Error) => void): void {
  if (counted === undefined) done()
  else counted.then(() => done(), done)
}

function couponId(request: FastifyRequest): number | undefined {
  const { id } = (request.params ?? {}) as { id?: unknown }
  return typeof id === 'number' ? id : undefined
}

/**
 * Limits held in Redis and shared by every process: per client address on every request (an onRequest hook,
 * before authentication and validation, so 401s, 400s and unknown routes count too), per user on issuance and
 * on status reads (route hooks). Also remembers unknown coupon ids for COUPON_MISS_TTL_MS.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const refused = new Counter({
      name: 'coupon_rate_limited_total',
      help: 'Requests refused 429 by a limit (address, issuance or status), from Redis or from memory',
      labelNames: ['limit'] as const,
      registers: [app.metrics.registry],
    })
    const limit = (name: LimitName, settings: RateLimit) => {
      const counter = refused.labels(name)
      const shared = new SharedLimit(app.redis, `${config.redisPrefix}limit:${name}`, settings, () =>
        counter.inc(),
      )
      app.addHook('onClose', async () => shared.close())
      return shared
    }
    const perAddress = limit('address', config.addressLimit)
    const perUserIssuance = limit('issuance', config.rateLimitPerUser)
    const perUserStatus = limit('status', config.statusLimitPerUser)

    // request.ip is the socket address, or with TRUST_PROXY the first address X-Forwarded-For names that is
    // not a trusted proxy.
    // Callback hooks: most requests are counted in memory, without a promise.
    app.addHook('onRequest', (request, _reply, done) => settle(perAddress.consume(request.ip), done))

    const misses = new CouponMisses(config.couponMissTtlMs)
    /** Requests whose route looks a coupon up through `unknownCoupon`: their 404 is remembered. */
    const lookups = new WeakSet<FastifyRequest>()
    app.addHook('onError', async (request, _reply, error) => {
      const id = couponId(request)
      if (
        id !== undefined &&
        lookups.has(request) &&
        error instanceof AppError &&
        error.code === 'COUPON_NOT_FOUND'
      )
        misses.remember(id)
    })
    const names = channels(config.redisPrefix)
    app.redisSubscriber.on('message', (channel: string, message: string) => {
      if (channel === names.couponChanged) misses.forget(Number(message))
    })
    await app.redisSubscriber.subscribe(names.couponChanged)

    app.decorate('limits', {
      countIssuance: (request) => perUserIssuance.consume(request.userId),
      statusReadsPerUser: (request, _reply, done) => settle(perUserStatus.consume(request.userId), done),
      unknownCoupon: (request, _reply, done) => {
        const id = couponId(request)
        if (id !== undefined && misses.has(id))
          return done(new AppError('COUPON_NOT_FOUND', `no coupon ${id}`))
        if (id !== undefined) lookups.add(request)
        done()
      },
      countIssuanceInMemory: (address, userId, id, answered) => {
        if (misses.has(id)) return false
        const now = Date.now()
        const byAddress = perAddress.localCount(address, now)
        if (byAddress === undefined) return false
        const byUser = perUserIssuance.localCount(userId, now)
        if (byUser === undefined || !answered()) return false
        perAddress.countLocally(address, byAddress)
        perUserIssuance.countLocally(userId, byUser)
        return true
      },
      findCoupon: (id, find) => {
        if (misses.has(id)) return Promise.reject(new AppError('COUPON_NOT_FOUND', `no coupon ${id}`))
        return find(id).catch((error: unknown) => {
          if (error instanceof AppError && error.code === 'COUPON_NOT_FOUND') misses.remember(id)
          throw error
        })
      },
    })
  },
  { name: 'limits', dependencies: ['redis', 'metrics'] },
)
