import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, ERROR_CODES, type ErrorCode, isInfrastructureError } from '../../domain/errors.ts'

export interface Problem {
  type: string
  title: string
  status: number
  code: ErrorCode
  detail: string
  [extra: string]: unknown
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

/** Answers an AppError as problem+json (the admission route answers its 409/410 refusals with `problem`). */
export function sendAppError(reply: FastifyReply, error: AppError) {
  return send(reply, problem(error.code, error.message, error.extra), error.retryAfterSeconds)
}

/** The one error handler: every failure leaves as application/problem+json (RFC 9457) with a stable code. */
export default fp(
  async (app) => {
    app.setErrorHandler(
      (error: FastifyError | AppError | Error, request: FastifyRequest, reply: FastifyReply) => {
        if (error instanceof AppError) {
          if (error.status >= 500)
            request.log.warn({ reqId: request.id, err: error.cause ?? error }, error.message)
          return sendAppError(reply, error)
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
          request.log.warn({ reqId: request.id, err: error }, 'dependency unavailable')
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
        request.log.error({ reqId: request.id, err: error }, 'unhandled error')
        return send(reply, problem('INTERNAL', 'an internal error occurred'))
      },
    )
    app.setNotFoundHandler((request, reply) =>
      send(reply, problem('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
    )
  },
  { name: 'errors' },
)
