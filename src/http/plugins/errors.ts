import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, ERROR_CODES, type ErrorCode, isInfrastructureError } from '../../domain/errors.ts'
import { queryToken } from './auth.ts'

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

/** RFC 6750: a 401 says how to authenticate, and whether the credentials sent were refused. */
function challenge(request: FastifyRequest): string {
  const sent = request.headers.authorization !== undefined || queryToken(request) !== undefined
  return sent ? 'Bearer realm="coupon-rush", error="invalid_token"' : 'Bearer realm="coupon-rush"'
}

function send(reply: FastifyReply, body: Problem, retryAfterSeconds?: number) {
  if (retryAfterSeconds !== undefined)
    reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterSeconds))))
  if (body.status === 401) reply.header('www-authenticate', challenge(reply.request))
  return reply.code(body.status).type('application/problem+json').send(body)
}

/** Fastify's and Node's own client errors by status; any other 4xx is a request that is not valid. */
const CLIENT_ERRORS: Partial<Record<number, ErrorCode>> = {
  404: 'NOT_FOUND',
  408: 'REQUEST_TIMEOUT',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  431: 'HEADERS_TOO_LARGE',
}

function clientErrorCode(status: number): ErrorCode {
  return CLIENT_ERRORS[status] ?? 'VALIDATION_ERROR'
}

/** Errors Fastify's router meets before a route runs: a bad URL encoding, a path parameter over 100 characters. */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode ?? 500
  if (status >= 500) {
    send(reply, problem('INTERNAL', 'an internal error occurred'))
    return
  }
  send(reply, problem(clientErrorCode(status), error.message))
}

/**
 * Errors Node's HTTP parser meets before Fastify sees a request (malformed request, headers over the size
 * limit, a request too slow to arrive) also answer problem+json, then the connection closes.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, detail] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'the request did not arrive in time']
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'the request headers are larger than the server accepts']
        : [400, 'the HTTP request is malformed']
  const body = JSON.stringify(problem(clientErrorCode(status), detail))
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(error)
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
        // The message comes from plugins/validation.ts `schemaErrorFormatter`.
        if (fastifyError.validation) return send(reply, problem('VALIDATION_ERROR', fastifyError.message))
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
          // Fastify's own client errors: body too large, unsupported media type, bad URL, ...
          return send(reply, problem(clientErrorCode(status), fastifyError.message))
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
