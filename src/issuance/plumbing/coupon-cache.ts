import type { Coupon } from '../../domain/coupon.ts'
import { findCoupon } from '../../storage/coupons.ts'
import type { Db } from '../../storage/postgres.ts'

interface Entry {
  /** The last definition read, served even while a refresh is running or failing. */
  coupon?: Coupon
  /** The first read of this id, shared by every concurrent miss. */
  loading?: Promise<Coupon | undefined>
  freshUntil: number
  refreshing: boolean
}

/**
 * Coupon definitions kept in process memory, so the admission hot path never queries Postgres. A stale entry
 * is still served while it is refreshed in the background (a coupon changes only through PATCH or DELETE
 * /admin/coupons/{id}, announced on coupon-changed so every process drops it at once), which also keeps admissions
 * running while Postgres is down. Concurrent misses for one id share one query; misses are not kept.
 */
export class CouponCache {
  private readonly entries = new Map<number, Entry>()
  private readonly db: Db
  private readonly ttlMs: number

  constructor(db: Db, ttlMs = 60_000) {
    this.db = db
    this.ttlMs = ttlMs
  }

  get(id: number): Promise<Coupon | undefined> {
    const cached = this.peek(id)
    if (cached !== undefined) return Promise.resolve(cached)
    const entry = this.entries.get(id)
    if (entry?.loading !== undefined) return entry.loading
    const loading = findCoupon(this.db, id)
    this.entries.set(id, { loading, freshUntil: 0, refreshing: false })
    loading.then(
      (coupon) => (coupon === undefined ? this.entries.delete(id) : this.set(coupon)),
      () => this.entries.delete(id),
    )
    return loading
  }

  /** The coupon if it is in memory (a stale one too, refreshed in the background), without a lookup. */
  peek(id: number): Coupon | undefined {
    const entry = this.entries.get(id)
    if (entry?.coupon === undefined) return undefined
    if (entry.freshUntil <= Date.now() && !entry.refreshing) this.refresh(id, entry)
    return entry.coupon
  }

  set(coupon: Coupon): void {
    this.entries.set(coupon.id, { coupon, freshUntil: Date.now() + this.ttlMs, refreshing: false })
  }

  invalidate(id?: number): void {
    if (id === undefined) this.entries.clear()
    else this.entries.delete(id)
  }

  private refresh(id: number, entry: Entry): void {
    entry.refreshing = true
    findCoupon(this.db, id).then(
      (coupon) => (coupon === undefined ? this.entries.delete(id) : this.set(coupon)),
      () => {
        // Postgres unreachable: keep serving what we have and try again on a later request.
        entry.refreshing = false
      },
    )
  }
}
