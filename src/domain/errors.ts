/** Every error a client can see, with its stable `code` and HTTP status (docs/api.md "Errors"). */
export const ERROR_CODES = {
  VALIDATION_ERROR: { status: 400, title: 'The request is not valid' },
  UNAUTHENTICATED: { status: 401, title: 'Authentication is required' },
  FORBIDDEN: { status: 403, title: 'Not allowed' },
  PROOF_OF_WORK_REQUIRED: { status: 403, title: 'This coupon asks for a solved proof-of-work challenge' },
  PROOF_OF_WORK_INVALID: { status: 403, title: 'The proof-of-work solution is not valid' },
  PROOF_OF_WORK_REPLAYED: { status: 403, title: 'This proof-of-work solution was already used' },
  NOT_FOUND: { status: 404, title: 'No such resource' },
  COUPON_NOT_FOUND: { status: 404, title: 'No such coupon' },
  NO_PROOF_OF_WORK: { status: 404, title: 'This coupon asks for no proof of work' },
  NOT_REQUESTED: { status: 404, title: 'This coupon was not requested by this user' },
  USER_COUPON_NOT_FOUND: { status: 404, title: 'No such coupon of this user' },
  REQUEST_TIMEOUT: { status: 408, title: 'The request took too long to arrive' },
  ALREADY_REQUESTED: { status: 409, title: 'This user already requested this coupon' },
  ALREADY_REDEEMED: { status: 409, title: 'This coupon was already redeemed' },
  ORDER_MISMATCH: { status: 409, title: 'The order does not match the redemption' },
  NOT_REDEEMED: { status: 409, title: 'This coupon holds no redemption to cancel' },
  REDEMPTION_CANCELLED: { status: 409, title: 'This order’s redemption was cancelled' },
  SALE_STARTED: { status: 409, title: 'The sale has started: its start cannot move' },
  SALE_ENDED: { status: 409, title: 'The sale has ended: only its name can change' },
  COUPON_REQUESTED: { status: 409, title: 'The coupon has been requested: it cannot be deleted' },
  SOLD_OUT: { status: 410, title: 'The coupon is sold out' },
  COUPON_EXPIRED: { status: 410, title: 'The coupon has expired' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  URI_TOO_LONG: { status: 414, title: 'A path parameter is too long' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The body must be application/json' },
  EXPECTATION_FAILED: { status: 417, title: 'The Expect header cannot be met' },
  ISSUE_NOT_STARTED: { status: 422, title: 'Issuance has not started yet' },
  ISSUE_ENDED: { status: 422, title: 'Issuance has ended' },
  ISSUE_PAUSED: { status: 422, title: 'Issuance is paused' },
  QUANTITY_DECREASE: { status: 422, title: "A coupon's quantity can only grow" },
  SALE_NOT_OVER: { status: 422, title: 'The sale is not over yet' },
  MODE_UNAVAILABLE: { status: 422, title: 'This issuance mode is not available here' },
  ORDER_BELOW_MINIMUM: { status: 422, title: 'The order is below the coupon’s minimum amount' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
  UNAVAILABLE: { status: 503, title: 'The service cannot take the request right now' },
  INTERNAL: { status: 500, title: 'Internal error' },
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** A failure with a stable code; the HTTP layer turns it into problem+json. */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly status: number
  /** Extra members for the problem body (e.g. the current `issuance` of a 409). */
  readonly extra: Record<string, unknown>
  /** Seconds for `Retry-After` on 429 and 503. */
  readonly retryAfterSeconds: number | undefined

  constructor(
    code: ErrorCode,
    detail?: string,
    options: { extra?: Record<string, unknown>; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(detail ?? ERROR_CODES[code].title, { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.status = ERROR_CODES[code].status
    this.extra = options.extra ?? {}
    this.retryAfterSeconds = options.retryAfterSeconds
  }
}

/** Redis or Postgres could not take the request: always 503 with Retry-After, never a 2xx. */
export function unavailable(what: string, cause?: unknown): AppError {
  return new AppError('UNAVAILABLE', `${what} is unavailable, try again shortly`, {
    retryAfterSeconds: 1,
    cause,
  })
}

/**
 * Redis ran a write but fewer replicas than REDIS_REPLICA_ACK confirmed it in time: a failover could still
 * lose it, so it is not acknowledged (503) and not written on yet.
 */
export class ReplicaAckError extends Error {
  constructor(replicas: number, wanted: number) {
    super(`only ${replicas} of ${wanted} Redis replicas confirmed the write in time`)
    this.name = 'ReplicaAckError'
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
])
// MOVED/ASK: a cluster slot moved (a failover) and the command did not run; the next try follows it.
const REDIS_BUSY = /^(LOADING|BUSY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|NOREPLICAS|MOVED|ASK) /

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
  if (error instanceof ReplicaAckError) return true
  if (name === 'ReplyError') return REDIS_BUSY.test(message)
  if (
    /Connection is closed|Command aborted due to connection close|Stream isn't writeable|Command timed out|Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended|the database system is/i.test(
      message,
    )
  ) {
    return true
  }
  return error instanceof AggregateError && error.errors.some(isInfrastructureError)
}
