import { timingSafeEqual } from 'node:crypto'
import { createVerifier } from 'fast-jwt'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../../config/config.ts'
import { AppError } from '../../domain/errors.ts'

declare module 'fastify' {
  interface FastifyInstance {
    authenticateUser: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
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

export const USER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/

/**
 * The bearer token; on the SSE routes only (EventSource cannot send headers) also the `access_token` query
 * parameter. Anywhere else a token in the URL would end up in logs and histories, so it is not taken.
 */
function bearerToken(request: FastifyRequest, reply: FastifyReply): string {
  // Answers to authenticated requests, refusals included, are one user's: never stored. The admission, whose
  // answers no browser keeps, opts out with the other browser-facing headers (see security.ts).
  if (request.routeOptions.config.securityHeaders !== false) reply.header('cache-control', 'no-store')
  const header = request.headers.authorization
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)$/i.exec(header)
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

function verifyFailure(error: unknown): string {
  switch ((error as { code?: string }).code) {
    case 'FAST_JWT_EXPIRED':
      return 'the token has expired'
    case 'FAST_JWT_MISSING_REQUIRED_CLAIM':
      return 'the token must carry an expiry (exp)'
    default:
      return 'the token is not valid'
  }
}

/**
 * Users: HS256 JWTs (algorithm pinned, `exp` required and honoured) whose `sub` is the user id. Admins: the
 * admin token.
 * A user id only ever comes from a verified token, so nobody can act as another user.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    // No token cache: hashing a token for the cache key costs about what verifying its HMAC does.
    // A token without `exp` would never expire: refused.
    const verify = createVerifier({
      key: config.jwtSecret,
      algorithms: ['HS256'],
      requiredClaims: ['exp'],
    })
    const adminToken = Buffer.from(config.adminToken)
    app.decorateRequest('userId', '')

    app.decorate('authenticateUser', async (request: FastifyRequest, reply: FastifyReply) => {
      const token = bearerToken(request, reply)
      let payload: { sub?: unknown }
      try {
        payload = verify(token)
      } catch (error) {
        throw new AppError('UNAUTHENTICATED', verifyFailure(error))
      }
      if (typeof payload.sub !== 'string' || !USER_ID_PATTERN.test(payload.sub)) {
        throw new AppError(
          'UNAUTHENTICATED',
          'the token subject must be a user id of 1-64 characters A-Za-z0-9._:-',
        )
      }
      request.userId = payload.sub
    })

    app.decorate('authenticateAdmin', async (request: FastifyRequest, reply: FastifyReply) => {
      const token = Buffer.from(bearerToken(request, reply))
      if (token.length !== adminToken.length || !timingSafeEqual(token, adminToken)) {
        throw new AppError('FORBIDDEN', 'the admin token is required')
      }
    })
  },
  { name: 'auth' },
)
