import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type ServerOptions,
  type ServerResponse,
} from 'node:http'
import { performance } from 'node:perf_hooks'
import type { FastifyInstance, FastifyServerFactory } from 'fastify'
import { Counter } from 'prom-client'
import { BEARER } from './plugins/auth.ts'
import { ISSUANCE_ROUTE, REFUSAL_BODIES } from './routes/coupons.ts'

/** The issuance path with a canonical coupon id (what the route's params schema accepts as it is). */
const ISSUANCE_PATH = /^\/coupons\/([1-9][0-9]{0,15})\/issuance$/

/** Answers a request before Fastify routes it and returns true, or returns false and leaves it to Fastify. */
export type EarlyAnswer = (request: IncomingMessage, response: ServerResponse) => boolean

/** What the app's HTTP server is made with (Fastify's own factory would take these from its options). */
export interface HttpServerSettings {
  http: ServerOptions
  keepAliveTimeout: number
  requestTimeout: number
}

/**
 * The app's HTTP server as Fastify's own factory makes it (lib/server.js, HTTP/1: the app uses no HTTPS or
 * HTTP/2), with a place for an early answer in front of Fastify's handler. Empty until `open`: everything
 * goes to Fastify.
 */
export function serverWithFrontDoor(settings: HttpServerSettings): {
  serverFactory: FastifyServerFactory
  open(answer: EarlyAnswer): void
  close(): void
} {
  let early: EarlyAnswer | undefined
  const serverFactory: FastifyServerFactory = (handler) => {
    const listener: RequestListener = (request, response) => {
      if (early === undefined || !early(request, response)) handler(request, response)
    }
    const server = createServer(settings.http, listener)
    server.keepAliveTimeout = settings.keepAliveTimeout
    server.requestTimeout = settings.requestTimeout
    return server
  }
  return {
    serverFactory,
    open: (answer) => {
      early = answer
    },
    close: () => {
      early = undefined
    },
  }
}

// A string body, as Fastify sends it: Node writes the head and a string body in one write, where a Buffer
// body takes a writev of two.
const SOLD_OUT_BODY = REFUSAL_BODIES.SOLD_OUT
/** The headers the issuance route sends with its 410 SOLD_OUT (Node adds Date and the keep-alive ones). */
const SOLD_OUT_HEADERS = {
  'content-type': 'application/problem+json; charset=utf-8',
  'content-length': String(Buffer.byteLength(SOLD_OUT_BODY)),
}

/**
 * The sold-out door: the answer most requests of a flash sale get, a late user's 410 SOLD_OUT once this
 * process knows the coupon is sold out, given before Fastify routes the request. Per request the full route
 * runs nine hooks (onRequest 5, preParsing, preValidation, onResponse 2), a params validation and an async
 * handler with its promise hops; this gives the same answer (status, headers, body) after the same checks,
 * and counts it where the route does. It answers only when every check passes, and none of them counts
 * anything:
 * - `POST /coupons/{id}/issuance` with a canonical id, a Host header, no body and a `Bearer` token;
 * - the connection was not refused for the connection budget, and the app is not closing (the door is
 *   closed on preClose, so Fastify answers its 503);
 * - the token verifies at once (HS256: the door is not opened for the identity provider's tokens);
 * - the coupon is in this process's cache, asks no proof of work, and its memo knows it sold out (checked
 *   before the token, so an admission in a live sale costs the door a few lookups and no verify);
 * - the address and per-user issuance limits would count the request in memory (no Redis call, no refusal);
 * - the sold-out memo refuses the user (not a holder, not paused, not near the end; this counts the refusal
 *   in the coupon's stats).
 * Then the request is counted in both limits (in the same pass over them) and the outcome metric, and
 * answered with the rest of this event-loop turn's door answers (as the memo's answers leave, see
 * sold-out-memo.ts), with its latency recorded under the route. Anything else (a 401, a 429, a holder's 409,
 * a coupon not cached) goes to Fastify as it came; a request whose token the door verified carries its user
 * id along, so the route does not verify it again.
 */
export function soldOutDoor(
  app: FastifyInstance,
  clientAddress: (request: IncomingMessage) => string | undefined,
): EarlyAnswer {
  const { issuance, limits, metrics, connections, userTokens } = app
  const answered = new Counter({
    name: 'coupon_sold_out_door_answers_total',
    help: '410 SOLD_OUT answers given before routing, by the sold-out door (also in the route and outcome metrics)',
    registers: [metrics.registry],
  })
  const waiting: ServerResponse[] = []
  const startedAt: number[] = []
  const flush = () => {
    for (let i = 0; i < waiting.length; i++) {
      const response = waiting[i]!
      response.writeHead(410, SOLD_OUT_HEADERS)
      response.end(SOLD_OUT_BODY)
      metrics.observeLatency(ISSUANCE_ROUTE, 'POST', 410, (performance.now() - startedAt[i]!) / 1000)
    }
    answered.inc(waiting.length)
    waiting.length = 0
    startedAt.length = 0
  }
  return (request, response) => {
    if (request.method !== 'POST') return false
    const path = ISSUANCE_PATH.exec(request.url ?? '')
    if (path === null) return false
    const started = performance.now()
    const { headers } = request
    if (headers.host === undefined || headers['transfer-encoding'] !== undefined) return false
    if (headers['content-length'] !== undefined && headers['content-length'] !== '0') return false
    const bearer = BEARER.exec(headers.authorization ?? '')
    if (bearer === null || connections.isRefused(request.socket)) return false
    const couponId = Number(path[1])
    const coupon = issuance.cachedCoupon(couponId)
    // Nothing is verified for a coupon the memo does not refuse requests of (an admission, in a live sale).
    if (coupon === undefined || coupon.proofOfWork !== null || !issuance.knowsSoldOut(coupon)) return false
    const address = clientAddress(request)
    if (address === undefined) return false
    let userId: string | Promise<string>
    try {
      userId = userTokens.verify(bearer[1]!)
    } catch {
      return false // the route answers the 401 with its reason
    }
    if (typeof userId !== 'string') return false
    if (
      !limits.countIssuanceInMemory(address, userId, couponId, () =>
        issuance.refusesFromMemory(coupon, userId),
      )
    ) {
      // A holder, or a request the limits count in Redis: the route answers it, without a second verify.
      userTokens.verifiedBeforeRouting(request, userId)
      return false
    }
    metrics.countOutcome(coupon.issueMode, 'SOLD_OUT')
    if (waiting.length === 0) setImmediate(flush)
    waiting.push(response)
    startedAt.push(started)
    return true
  }
}
