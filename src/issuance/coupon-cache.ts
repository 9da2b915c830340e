import type { Coupon } from '../domain/coupon.ts'
import { findCoupon } from '../storage/coupons.ts'
import type { Db } from '../storage/postgres.ts'

/**
 * Coupon definitions kept in process memory, so the admission hot path never queries Postgres. Entries
 * expire after `ttlMs` and are dropped at once when any process announces a change (see `invalidate`).
 * Concurrent misses for one id share one query.
 */
export class CouponCache {
  private readonly entries = new Map<number, { coupon: Promise<Coupon | undefined>; expiresAt: number }>()
  private readonly db: Db
  private readonly ttlMs: number

  constructor(db: Db, ttlMs = 60_000) {
    this.db = db
    this.ttlMs = ttlMs
  }

  get(id: number): Promise<Coupon | undefined> {
    const hit = this.entries.get(id)
    if (hit && hit.expiresAt > Date.now()) return hit.coupon
    const coupon = findCoupon(this.db, id)
    this.entries.set(id, { coupon, expiresAt: Date.now() + this.ttlMs })
    // Misses and failures are not kept: a coupon created a moment later, or Postgres back up, is seen at once.
    coupon.then(
      (found) => found === undefined && this.entries.delete(id),
      () => this.entries.delete(id),
    )
    return coupon
  }

  set(coupon: Coupon): void {
    this.entries.set(coupon.id, { coupon: Promise.resolve(coupon), expiresAt: Date.now() + this.ttlMs })
  }

  invalidate(id?: number): void {
    if (id === undefined) this.entries.clear()
    else this.entries.delete(id)
  }
}
