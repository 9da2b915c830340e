/**
 * Every Redis key starts with the configured prefix. A coupon's keys carry `{c:<id>}` as a hash tag, so
 * they live on one Redis Cluster slot and one Lua script may touch all of them atomically. The issuance code
 * reads them from the coupon's state handle (issuance/core/coupon-state.ts), which resolves them once.
 */
export interface CouponKeys {
  /** Hash: stock, seq (last position), counters; its absence means Redis lost the coupon. */
  state: string
  /** Hash: userId -> encoded issuance record (codec in issuance/core/record.ts). */
  users: string
  /** Stream of accepted requests (stream and kafka modes): the outbox toward Postgres or Kafka. */
  stream: string
  /** Stream of entries that failed too often. */
  deadLetters: string
  /** Sorted set of waiting users scored by arrival sequence (queue mode). */
  queue: string
  /** Sorted set of pre-queued users (before the start) scored by arrival, or by shuffled rank at the start. */
  prequeue: string
  /** Hash: userId -> arrival place in the pre-queue, written as each is moved (for the order log). */
  prequeuePlaces: string
  /** Fair lock of the sync mode: holder, FIFO of waiters, waiter deadlines. */
  lock: string
  lockWaiters: string
  lockDeadlines: string
  lockArrivals: string
  /** Short leases so only one process drains or rebuilds a coupon at a time. */
  drainLease: string
  rebuildLease: string
  /** A short-lived marker written right before a WAIT, so the WAIT covers every earlier write of the slot. */
  replicaProbe: string
}

export function couponKeys(prefix: string, couponId: number): CouponKeys {
  const tag = `${prefix}{c:${couponId}}:`
  return {
    state: `${tag}state`,
    users: `${tag}users`,
    stream: `${tag}stream`,
    deadLetters: `${tag}dead`,
    queue: `${tag}queue`,
    prequeue: `${tag}prequeue`,
    prequeuePlaces: `${tag}prequeue:places`,
    lock: `${tag}lock`,
    lockWaiters: `${tag}lock:waiters`,
    lockDeadlines: `${tag}lock:deadlines`,
    lockArrivals: `${tag}lock:arrivals`,
    drainLease: `${tag}drain-lease`,
    rebuildLease: `${tag}rebuild-lease`,
    replicaProbe: `${tag}replica-probe`,
  }
}

/**
 * A used proof-of-work solution of the coupon (its challenge), kept until the challenge expires so it works
 * once across every process; on the coupon's slot like its other keys. Expires by itself, so a sale's
 * release does not need to delete it.
 */
export function proofOfWorkKey(prefix: string, couponId: number, challenge: string): string {
  return `${prefix}{c:${couponId}}:pow:${challenge}`
}

/**
 * Process-wide channels. Classic pub/sub (SUBSCRIBE/PUBLISH) is broadcast to every node of a Redis Cluster,
 * so these need no hash tag, and one subscriber connection per process hears them whichever node it is on.
 */
export function channels(prefix: string) {
  return {
    /** A coupon was created or changed: drop it from every process's cache. */
    couponChanged: `${prefix}coupon-changed`,
    /** A user's request was decided: JSON Issuance, for SSE. */
    decisions: `${prefix}decisions`,
    /**
     * A coupon's stream (stream, kafka) or waiting queue (queue) got its first entry since its drainers last
     * cleared the wake flag: the stream's or queue's key (published by the admission scripts).
     */
    wakeUp: `${prefix}wake-up`,
    /** The sync fair lock was released: waiters retry at once. */
    lockReleased: `${prefix}lock-released`,
  }
}
