import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, ERROR_CODES, type ErrorCode } from '../../domain/errors.ts'

export interface Problem {
  type: string
  title: string
  status: number
  code: ErrorCode
  detail: string
  [extra: string]: unknown
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
])
const REDIS_BUSY = /^(LOADING|BUSY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|NOREPLICAS)/

/**
 * True for failures of Redis or Postgres being unreachable or overloaded (not bugs): these answer 503 with
 * Retry-After. Covers ioredis (no offline queue, command timeout, retries exhausted) and pg (refused,
 * terminated, pool timeout, server shutting down: SQLSTATE classes 08 and 57P).
 */
export function isInfrastructureError(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const { code, name, message } = error as Error & { code?: string }
  if (code !== undefined && NETWORK_CODES.has(code)) return true
  if (typeof code === 'string' && (code.startsWith('08') || code.startsWith('57P') || code === '53300'))
    return true
  if (name === 'MaxRetriesPerRequestError' || name === 'ClusterAllFailedError') return true
  if (name === 'ReplyError') return REDIS_BUSY.test(message)
  if (
    /Connection is closed|Stream isn't writeable|Command timed out|Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended|the database system is/i.test(
      message,
    )
  ) {
    return true
  }
  return error instanceof AggregateError && error.errors.some(isInfrastructureError)
}

export function problem(code: ErrorCode, detail: string, extra: Record<string, unknown> = {}): Problem {
  const { status, title } = ERROR_CODES[code]
  return {
    type: `https://coupon-rush.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status,
    code,
    detail,
    ...extra,
  }
}

function send(reply: FastifyReply, body: Problem, retryAfterSeconds?: number) {
  if (retryAfterSeconds !== undefined)
    reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterSeconds))))
  return reply.code(body.status).type('application/problem+json').send(body)
}

/** The one error handler: every failure leaves as application/problem+json (RFC 9457) with a stable code. */
export default fp(
  async (app) => {
    app.setErrorHandler(
      (error: FastifyError | AppError | Error, request: FastifyRequest, reply: FastifyReply) => {
        if (error instanceof AppError) {
          if (error.status >= 500) request.log.warn({ err: error.cause ?? error }, error.message)
          return send(reply, problem(error.code, error.message, error.extra), error.retryAfterSeconds)
        }
        const fastifyError = error as FastifyError
        if (fastifyError.validation) {
          return send(
            reply,
            problem(
              'VALIDATION_ERROR',
              `${fastifyError.validationContext ?? 'request'} ${fastifyError.message.replace(/^(body|params|querystring|headers)\s*/, '')}`,
            ),
          )
        }
        if (isInfrastructureError(error)) {
          request.log.warn({ err: error }, 'dependency unavailable')
          return send(
            reply,
            problem('UNAVAILABLE', 'a storage dependency is unavailable, try again shortly'),
            1,
          )
        }
        const status = fastifyError.statusCode
        if (status !== undefined && status >= 400 && status < 500) {
          // Fastify's own client errors: bad JSON, body too large, unsupported media type, ...
          return send(reply, problem('VALIDATION_ERROR', fastifyError.message))
        }
        request.log.error({ err: error }, 'unhandled error')
        return send(reply, problem('INTERNAL', 'an internal error occurred'))
      },
    )
    app.setNotFoundHandler((request, reply) =>
      send(reply, problem('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
    )
  },
  { name: 'errors' },
)
