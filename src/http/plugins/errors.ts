import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, ERROR_CODES, type ErrorCode, isInfrastructureError } from '../../domain/errors.ts'
import { CapacityRefusal } from '../connection-budget.ts'
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
  // The rest of a body that did not arrive in time is not waited for.
  if (body.status === 408) reply.header('connection', 'close')
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

/** A whole HTTP/1.1 problem+json answer that closes the connection, for writing on a raw socket. */
export function rawProblemResponse(
  status: number,
  code: ErrorCode,
  detail: string,
  retryAfterSeconds?: number,
): string {
  const body = JSON.stringify(problem(code, detail))
  const retryAfter = retryAfterSeconds === undefined ? '' : `Retry-After: ${retryAfterSeconds}\r\n`
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n${retryAfter}Connection: close\r\n\r\n${body}`
  )
}

/**
 * Errors Node's HTTP parser meets before Fastify sees a request (malformed request, headers over the size
 * limit, headers too slow to arrive) also answer problem+json, then the connection closes.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, detail] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'the request did not arrive in time']
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'the request headers are larger than the server accepts']
        : [400, 'the HTTP request is malformed']
  if (socket.writable) socket.write(rawProblemResponse(status, clientErrorCode(status), detail))
  socket.destroy(error)
}

/** Node answers an `Expect` other than `100-continue` itself with a bare 417; this answers problem+json. */
function refuseExpectation(request: IncomingMessage, response: ServerResponse): void {
  const body = JSON.stringify(
    problem('EXPECTATION_FAILED', `the server cannot meet "Expect: ${request.headers.expect ?? ''}"`),
  )
  response.writeHead(417, {
    'content-type': 'application/problem+json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  })
  response.end(body)
}

/**
 * The client closed its connection while its request was read (ECONNRESET "aborted", a premature close):
 * nothing to answer and nothing wrong on this side.
 */
function isClientAbort(error: Error & { code?: string }, request: FastifyRequest): boolean {
  const gone = request.raw.readableAborted || request.raw.socket.destroyed
  return gone && (error.code === 'ECONNRESET' || error.code === 'ERR_STREAM_PREMATURE_CLOSE')
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
          // A refusal by the connection budget is load shed on purpose, not a failure to log.
          if (error.status >= 500 && !(error instanceof CapacityRefusal))
            request.log.warn({ reqId: request.id, err: error.cause ?? error }, error.message)
          return sendAppError(reply, error)
        }
        const fastifyError = error as FastifyError
        if (isClientAbort(fastifyError, request)) {
          // The process logger: the request logger keeps only failures (LOG_REQUESTS), and this is none.
          app.log.info({ reqId: request.id, code: fastifyError.code }, 'client aborted the request')
          return send(reply, problem('VALIDATION_ERROR', 'the client closed the connection'))
        }
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
    app.server.on('checkExpectation', refuseExpectation)
    // Node 24 answers a bare 400 to an HTTP/1.1 request without Host unless `requireHostHeader: false`
    // (app.ts): this answers it as problem+json instead.
    app.addHook('onRequest', (request, reply, done) => {
      if (request.headers.host === undefined && request.raw.httpVersion === '1.1') {
        reply.header('connection', 'close')
        send(reply, problem('VALIDATION_ERROR', 'an HTTP/1.1 request needs a Host header'))
        return
      }
      done()
    })
    app.setNotFoundHandler((request, reply) =>
      send(reply, problem('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
    )
  },
  { name: 'errors' },
)
