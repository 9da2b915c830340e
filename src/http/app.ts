import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Config } from '../config/config.ts'
import { AppError } from '../domain/errors.ts'
import { loggerOptions, requestLogging } from '../logging/logger.ts'
import saleMetrics from '../monitoring/sale-metrics-plugin.ts'
import auth from './plugins/auth.ts'
import errors, { clientErrorHandler, frameworkErrors } from './plugins/errors.ts'
import issuance from './plugins/issuance.ts'
import metrics from './plugins/metrics.ts'
import postgres from './plugins/postgres.ts'
import redis from './plugins/redis.ts'
import validation, { ajvOptions, schemaErrorFormatter } from './plugins/validation.ts'
import workers from './plugins/workers.ts'
import { adminRoutes } from './routes/admin.ts'
import { couponRoutes } from './routes/coupons.ts'
import { meRoutes } from './routes/me.ts'
import { opsRoutes } from './routes/ops.ts'
import { Problem } from './schemas.ts'
import securityHeaders from './security.ts'

export interface AppOptions {
  config: Config
  /** Run the background workers (writers, scheduler, relay) in this process too; default RUN_WORKERS. */
  runWorkers?: boolean
  logger?: boolean
}

export async function buildApp({
  config,
  runWorkers = config.runWorkers,
  logger = true,
}: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: logger ? loggerOptions(config) : false,
    bodyLimit: 16 * 1024,
    ajv: ajvOptions,
    schemaErrorFormatter,
    clientErrorHandler,
    frameworkErrors,
    forceCloseConnections: true,
    // Per-request logs would cost more than the admission itself (/metrics has the request figures): by
    // default only failures, with no child logger per request (LOG_REQUESTS).
    ...requestLogging(config),
  }).withTypeProvider<TypeBoxTypeProvider>()

  // JSON only (anything else is 415); an empty body with a JSON content type is fine for
  // POST /coupons/{id}/issuance.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    if (body === '') return done(null, undefined)
    try {
      done(null, JSON.parse(body as string))
    } catch {
      done(new AppError('VALIDATION_ERROR', 'the body is not valid JSON'), undefined)
    }
  })

  app.addSchema(Problem)
  await app.register(errors)
  await app.register(validation)
  await app.register(securityHeaders)
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Coupon Rush',
        version: '0.1.0',
        description: 'First-come-first-served coupon issuance',
      },
      components: {
        securitySchemes: {
          userToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          adminToken: { type: 'http', scheme: 'bearer' },
        },
      },
    },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  await app.register(metrics)
  await app.register(postgres, { config })
  await app.register(redis, { config })
  await app.register(auth, { config })
  await app.register(rateLimit, {
    global: false,
    // Headers only when the limit is hit (with Retry-After): three more headers on every admission cost throughput.
    addHeadersOnExceeding: {
      'x-ratelimit-limit': false,
      'x-ratelimit-remaining': false,
      'x-ratelimit-reset': false,
    },
    errorResponseBuilder: (_request, context) =>
      new AppError('RATE_LIMITED', `at most ${context.max} requests per ${context.after}`, {
        retryAfterSeconds: context.ttl / 1000,
      }),
  })
  // Before issuance: preClose hooks run in registration order, and the workers stop before the modes close.
  if (runWorkers) await app.register(workers, { config })
  await app.register(issuance, { config })
  await app.register(saleMetrics, { config })
  await app.register(opsRoutes)
  await app.register(adminRoutes)
  await app.register(couponRoutes, { config })
  await app.register(meRoutes)
  return app
}
