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
}

export const USER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/

/** The bearer token, or for SSE (EventSource cannot send headers) the `access_token` query parameter. */
function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)$/i.exec(header)
    if (!match) throw new AppError('UNAUTHENTICATED', 'the Authorization header must be "Bearer <token>"')
    return match[1]!
  }
  const accept = request.headers.accept ?? ''
  const query = request.query as Record<string, unknown> | undefined
  if (accept.includes('text/event-stream') && typeof query?.access_token === 'string')
    return query.access_token
  throw new AppError('UNAUTHENTICATED', 'a bearer token is required')
}

/**
 * Users: HS256 JWTs (algorithm pinned, `exp` honoured) whose `sub` is the user id. Admins: the admin token.
 * A user id only ever comes from a verified token, so nobody can act as another user.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    // No token cache: hashing a token for the cache key costs about what verifying its HMAC does.
    const verify = createVerifier({ key: config.jwtSecret, algorithms: ['HS256'] })
    const adminToken = Buffer.from(config.adminToken)
    app.decorateRequest('userId', '')

    app.decorate('authenticateUser', async (request: FastifyRequest) => {
      const token = bearerToken(request)
      let payload: { sub?: unknown }
      try {
        payload = verify(token)
      } catch (error) {
        const expired = (error as { code?: string }).code === 'FAST_JWT_EXPIRED'
        throw new AppError('UNAUTHENTICATED', expired ? 'the token has expired' : 'the token is not valid')
      }
      if (typeof payload.sub !== 'string' || !USER_ID_PATTERN.test(payload.sub)) {
        throw new AppError(
          'UNAUTHENTICATED',
          'the token subject must be a user id of 1-64 characters A-Za-z0-9._:-',
        )
      }
      request.userId = payload.sub
    })

    app.decorate('authenticateAdmin', async (request: FastifyRequest) => {
      const token = Buffer.from(bearerToken(request))
      if (token.length !== adminToken.length || !timingSafeEqual(token, adminToken)) {
        throw new AppError('FORBIDDEN', 'the admin token is required')
      }
    })
  },
  { name: 'auth' },
)
