import type { Coupon, CouponStats, Issuance, IssueMode } from '../domain/coupon.ts'

export type { CouponStats } from '../domain/coupon.ts'

/** What `POST /coupons/{id}/issuance` answers: 201 ISSUED (sync), 202 PENDING (queue), 202 ACCEPTED. */
export interface IssuanceAnswer {
  httpStatus: 201 | 202
  issuance: Issuance
}

/**
 * One issuance design behind one interface. The HTTP layer has already authenticated the user, found the
 * coupon and checked its issue window; the mode decides and records the request.
 */
export interface IssuanceMode {
  readonly mode: IssueMode
  /**
   * Once the mode has answered SOLD_OUT, the users holding a request are the coupon's users hash and never
   * change, so the service may refuse everyone else from memory (see SoldOutMemo).
   */
  readonly soldOutIsFinal: boolean
  /** Sets up the coupon's Redis state right after it is created (later losses are rebuilt lazily). */
  prepare(coupon: Coupon): Promise<void>
  /** Admits or issues; throws AppError ALREADY_REQUESTED (with the current issuance) or SOLD_OUT. */
  request(coupon: Coupon, userId: string): Promise<IssuanceAnswer>
  /** The user's request for this coupon, or undefined if they never asked. */
  status(coupon: Coupon, userId: string): Promise<Issuance | undefined>
  stats(coupon: Coupon): Promise<CouponStats>
  /** Stock not yet promised, for the public coupon view; must not query Postgres in the Redis-first modes. */
  remaining(coupon: Coupon): Promise<number>
  /** Releases what the mode holds of its own (connections, timers). */
  close?(): Promise<void>
}

/** A background loop of a mode (queue scheduler, stream writers, Kafka relay and consumers). */
export interface IssuanceWorker {
  readonly name: string
  start(): Promise<void>
  stop(): Promise<void>
}
