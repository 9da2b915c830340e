/** One user's request for one coupon and its decision: the states and the record every mode reports. */

// WAITING: in the pre-queue, before the start (moved into the mode's admission at the start).
export const ISSUANCE_STATUSES = ['WAITING', 'PENDING', 'ACCEPTED', 'ISSUED', 'SOLD_OUT'] as const
export type IssuanceStatus = (typeof ISSUANCE_STATUSES)[number]

/** The request/decision state of one user for one coupon (GET /coupons/{id}/issuance, the SSE event). */
export interface Issuance {
  couponId: number
  userId: string
  status: IssuanceStatus
  position?: number
  /** WAITING: the arrival number in the pre-queue (the order at the start may be shuffled). */
  prequeuePlace?: number
  /** WAITING: when the pre-queued are admitted (issueStartsAt, ISO 8601). */
  startsAt?: string
  userCouponId?: number
  /** ISO 8601: the record travels through Redis, Kafka and the SSE stream as text. */
  requestedAt: string
  decidedAt?: string
  /** Status reads: undecided requests before this one (pre-queue and queue; an estimate in stream/kafka). */
  ahead?: number
  /** Status reads in queue and the pre-queue: the wait the measured drain rate predicts. */
  estimatedWaitMs?: number
  /** Status reads: when to ask again; grows with the distance from the front. */
  pollAfterMs?: number
  /** Issuance answers (2xx): what the service signed about this request (see docs/api.md "Receipts"). */
  receipt?: Receipt
}

/**
 * A signed statement of one admission: a leaf (SHA-256 of the canonical JSON of the fields but `proof` and
 * `signature`) of a Merkle tree whose root is signed with Ed25519 (docs/api.md "Receipts").
 */
export interface Receipt {
  couponId: number
  userId: string
  position?: number
  prequeuePlace?: number
  redisTimeMs: number
  status: IssuanceStatus
  /** Random (base64url), so a leaf tells nothing about its neighbours in the tree. */
  nonce: string
  /** The path from the leaf to the root: `L` or `R` (the sibling's side), then its base64url SHA-256. */
  proof: string[]
  /** base64url Ed25519 signature of `coupon-rush-receipt-root:` followed by the root's 32 bytes. */
  signature: string
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
