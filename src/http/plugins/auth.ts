import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { type UserTokenVerifier, userTokenVerifier } from '../../auth/verify.ts'
import type { Config } from '../../config/config.ts'
import { AppError } from '../../domain/errors.ts'

declare module 'fastify' {
  interface FastifyInstance {
    userTokens: {
      /** The user id of a valid user token (at once for HS256, a promise for the identity provider's), or throws 401/503. */
      verify: UserTokenVerifier
      /**
       * The sold-out door verified this request's token and left the request to Fastify: the route takes the
       * user id from here instead of verifying the token a second time.
       */
      verifiedBeforeRouting(request: IncomingMessage, userId: string): void
    }
    /** An onRequest hook: sets request.userId from a verified token, or fails 401/503. */
    authenticateUser: onRequestHookHandler
    authenticateAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
  interface FastifyRequest {
    userId: string
  }
  interface FastifyContextConfig {
    /** A Server-Sent Events route: it also takes the token as the `access_token` query parameter. */
    eventStream?: boolean
  }
}

/** An Authorization header with a bearer token (the token is the first group). */
export const BEARER = /^Bearer\s+(\S+)$/i

/**
 * Answers to authenticated requests, refusals included, are one user's: never stored. The admission, whose
 * answers no browser keeps, opts out with the other browser-facing headers (see security.ts).
 */
function noStore(request: FastifyRequest, reply: FastifyReply): void {
  if (request.routeOptions.config.securityHeaders !== false) reply.header('cache-control', 'no-store')
}

/**
 * The bearer token; on the SSE routes only (EventSource cannot send headers) also the `access_token` query
 * parameter. Anywhere else a token in the URL would end up in logs and histories, so it is not taken.
 */
function bearerToken(request: FastifyRequest, reply: FastifyReply): string {
  noStore(request, reply)
  const header = request.headers.authorization
  if (header !== undefined) {
    const match = BEARER.exec(header)
    if (!match) throw new AppError('UNAUTHENTICATED', 'the Authorization header must be "Bearer <token>"')
    return match[1]!
  }
  const token = queryToken(request)
  if (token !== undefined) return token
  throw new AppError('UNAUTHENTICATED', 'a bearer token is required')
}

/** The `access_token` query parameter, on the SSE routes only. */
export function queryToken(request: FastifyRequest): string | undefined {
  if (request.routeOptions.config.eventStream !== true) return undefined
  const query = request.query as Record<string, unknown> | undefined
  return typeof query?.access_token === 'string' ? query.access_token : undefined
}

/**
 * Wires authentication into Fastify: users by a bearer token that src/auth/ verifies (a user id only ever
 * comes from a verified token, so nobody can act as another user); admins by the admin token.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const verifyUserToken = userTokenVerifier(config)
    const adminToken = Buffer.from(config.adminToken)
    app.decorateRequest('userId', '')
    const verifiedEarly = new WeakMap<IncomingMessage, string>()
    app.decorate('userTokens', {
      verify: verifyUserToken,
      verifiedBeforeRouting: (request, userId) => verifiedEarly.set(request, userId),
    })

    // A callback hook, not an async one: an HS256 token is checked synchronously, and the admission path
    // spares the promise hops.
    const authenticateUser: onRequestHookHandler = (request, reply, done) => {
      const early = verifiedEarly.get(request.raw)
      if (early !== undefined) {
        noStore(request, reply)
        request.userId = early
        done()
        return
      }
      let verified: string | Promise<string>
      try {
        verified = verifyUserToken(bearerToken(request, reply))
      } catch (error) {
        done(error as Error)
        return
      }
      if (typeof verified === 'string') {
        request.userId = verified
        done()
        return
      }
      verified.then((userId) => {
        request.userId = userId
        done()
      }, done)
    }
    app.decorate('authenticateUser', authenticateUser)

    app.decorate('authenticateAdmin', async (request: FastifyRequest, reply: FastifyReply) => {
      const token = Buffer.from(bearerToken(request, reply))
      if (token.length !== adminToken.length || !timingSafeEqual(token, adminToken)) {
        throw new AppError('FORBIDDEN', 'the admin token is required')
      }
    })
  },
  { name: 'auth' },
)
