import type { IncomingMessage } from 'node:http'
import proxyAddr from '@fastify/proxy-addr'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Config } from '../config/config.ts'
import { AppError } from '../domain/errors.ts'
import { loggerOptions, requestLogging } from '../logging/logger.ts'
import saleMetrics from '../monitoring/sale-metrics-plugin.ts'
import auth from './plugins/auth.ts'
import connections from './plugins/connections.ts'
import errors, { clientErrorHandler, frameworkErrors } from './plugins/errors.ts'
import issuance from './plugins/issuance.ts'
import limits from './plugins/limits.ts'
import metrics from './plugins/metrics.ts'
import postgres from './plugins/postgres.ts'
import proofOfWork from './plugins/proof-of-work.ts'
import redis from './plugins/redis.ts'
import validation, { ajvOptions, schemaErrorFormatter } from './plugins/validation.ts'
import workers from './plugins/workers.ts'
import { adminRoutes } from './routes/admin.ts'
import { couponRoutes } from './routes/coupons.ts'
import { meRoutes } from './routes/me.ts'
import { opsRoutes } from './routes/ops.ts'
import { powDemoRoutes } from './routes/pow-demo.ts'
import { Problem } from './schemas/common.ts'
import securityHeaders from './security.ts'
import { serverWithFrontDoor, soldOutDoor } from './sold-out-door.ts'

/** The OpenAPI document's header; the paths come from the routes' schemas. */
const OPENAPI = {
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
} as const

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
  // A body that stops arriving is answered 408 by plugins/connections.ts after HTTP_REQUEST_TIMEOUT_MS;
  // Node's own request timeout (headers and body) is the backstop for a request Fastify never sees.
  // Event streams are exempt: their request is complete once the headers are in.
  const frontDoor = serverWithFrontDoor({
    requestTimeout: config.http.headersTimeoutMs + config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    http: {
      headersTimeout: config.http.headersTimeoutMs,
      // Node checks both timeouts this often (30 s by default, which would let a slow request live that long).
      connectionsCheckingInterval: 1_000,
      // Answered as problem+json by plugins/errors.ts instead of Node's bare 400.
      requireHostHeader: false,
    },
  })
  const app = Fastify({
    // The server with the sold-out door in front of Fastify's handler (sold-out-door.ts).
    serverFactory: frontDoor.serverFactory,
    logger: logger ? loggerOptions(config) : false,
    bodyLimit: 16 * 1024,
    ajv: ajvOptions,
    schemaErrorFormatter,
    clientErrorHandler,
    frameworkErrors,
    forceCloseConnections: true,
    // TRUST_PROXY: only these proxies' X-Forwarded-For is believed (request.ip); none by default.
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
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
  // Before any plugin that adds routes: the metrics give each route its latency hook as it is added.
  await app.register(metrics)
  await app.register(swagger, { openapi: OPENAPI })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  await app.register(connections, { config })
  await app.register(postgres, { config })
  await app.register(redis, { config })
  await app.register(auth, { config })
  await app.register(limits, { config })
  // Before issuance: preClose hooks run in registration order, and the workers stop before the modes close.
  if (runWorkers) await app.register(workers, { config })
  await app.register(issuance, { config })
  await app.register(proofOfWork, { config })
  await app.register(saleMetrics, { config })
  await app.register(opsRoutes)
  await app.register(adminRoutes)
  await app.register(couponRoutes, { config })
  await app.register(meRoutes)
  await app.register(powDemoRoutes)
  openSoldOutDoor(app, config, frontDoor.open)
  app.addHook('preClose', async () => frontDoor.close())
  return app
}

/**
 * Opens the sold-out door (sold-out-door.ts) once the app is ready: unless the identity provider's tokens
 * (verified with a promise) or every request's log line (LOG_REQUESTS=all, written by Fastify) are asked for.
 */
function openSoldOutDoor(
  app: FastifyInstance,
  config: Config,
  open: ReturnType<typeof serverWithFrontDoor>['open'],
): void {
  if (config.identityProvider !== undefined || config.requestLog === 'all') return
  // The client address as Fastify's request.ip gives it, so the address limit counts the same key.
  const trusted = config.trustProxy.length > 0 ? proxyAddr.compile(config.trustProxy) : undefined
  const clientAddress =
    trusted === undefined
      ? (request: IncomingMessage) => request.socket.remoteAddress
      : (request: IncomingMessage) => proxyAddr(request, trusted)
  app.addHook('onReady', async () => open(soldOutDoor(app, clientAddress)))
}
