import type { Coupon, CouponStats, Issuance, IssueMode } from '../../domain/coupon.ts'

/**
 * What `POST /coupons/{id}/issuance` answers, as a value: admitted (201 ISSUED in sync, 202 PENDING or
 * ACCEPTED), refused because the user already holds a request (409, with it when known), or sold out (410).
 * Only real failures (Redis or Postgres away: 503) are exceptions.
 */
export type RequestOutcome =
  | { kind: 'admitted'; httpStatus: 201 | 202; issuance: Issuance }
  | { kind: 'alreadyRequested'; issuance: Issuance | undefined }
  | { kind: 'soldOut' }

/** The sold-out answer (one object: most answers of a flash sale are this one). */
export const SOLD_OUT: RequestOutcome = Object.freeze({ kind: 'soldOut' })

/**
 * One issuance design behind one interface. The HTTP layer has already authenticated the user, found the
 * coupon and checked its issue window; the mode decides and records the request.
 */
export interface IssuanceMode {
  readonly mode: IssueMode
  /**
   * Redis holds a record for every request (the Redis-first modes), so the audit compares them user by user;
   * sync's records are a best-effort mirror of Postgres.
   */
  readonly recordsEveryRequest: boolean
  /** Sets up the coupon's Redis state right after it is created (later losses are rebuilt lazily). */
  prepare(coupon: Coupon): Promise<void>
  /** Admits or issues the request, or says why not. */
  request(coupon: Coupon, userId: string): Promise<RequestOutcome>
  /**
   * True when this request's answer is SOLD_OUT from memory, without Redis (counted as such); false when
   * `request` must decide. Modes without a sold-out memo leave it out.
   */
  refusesFromMemory?(coupon: Coupon, userId: string): boolean
  /** True when `refusesFromMemory` may refuse requests for this coupon now (it knows the coupon sold out). */
  knowsSoldOut?(coupon: Coupon): boolean
  /** The user's request for this coupon, or undefined if they never asked. */
  status(coupon: Coupon, userId: string): Promise<Issuance | undefined>
  stats(coupon: Coupon): Promise<CouponStats>
  /** Stock not yet promised, for the public coupon view; must not query Postgres in the Redis-first modes. */
  remaining(coupon: Coupon): Promise<number>
  /** Drops what the mode remembers of the coupon in this process (it changed somewhere). */
  forget?(couponId: number): void
  /** Requests this mode answered from memory, without a Redis call (for /metrics). */
  answeredFromMemory?(): number
  /** Releases what the mode holds of its own (connections, timers). */
  close?(): Promise<void>
}

/** A mode as its factory hands it over: whoever made it closes it. */
export type ClosableMode = IssuanceMode & { close(): Promise<void> }

/** A background loop of a mode (queue scheduler, stream writers, Kafka relay and consumers). */
export interface IssuanceWorker {
  readonly name: string
  start(): Promise<void>
  stop(): Promise<void>
}
