/** One user's request for one coupon and its decision: the states and the record every mode reports. */

export const ISSUANCE_STATUSES = ['PENDING', 'ACCEPTED', 'ISSUED', 'SOLD_OUT'] as const
export type IssuanceStatus = (typeof ISSUANCE_STATUSES)[number]

/** The request/decision state of one user for one coupon (GET /coupons/{id}/issuance, the SSE event). */
export interface Issuance {
  couponId: number
  userId: string
  status: IssuanceStatus
  position?: number
  userCouponId?: number
  /** ISO 8601: the record travels through Redis, Kafka and the SSE stream as text. */
  requestedAt: string
  decidedAt?: string
}

/** Live counters of one coupon. */
export interface CouponStats {
  /** Requests that reached admission: accepted plus refused as sold out (duplicates not counted). */
  requested: number
  /** Requests admitted with a position. */
  accepted: number
  /** Admitted but not decided yet. */
  pending: number
  /** Rows in Postgres. */
  issued: number
  /** Requests refused or resolved as sold out. */
  soldOut: number
  /** Stock not yet promised to anyone. */
  remaining: number
}
