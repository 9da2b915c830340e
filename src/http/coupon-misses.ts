/** At most this many unknown ids are remembered; a flood of distinct ids beyond it starts the memory afresh. */
const MAX_REMEMBERED = 100_000

/**
 * Coupon ids recently looked up and not found, kept for a short time so that a flood of lookups of unknown ids
 * is answered 404 from memory instead of costing a Postgres query each. A coupon created meanwhile is
 * announced on the coupon-changed channel, which drops its id here (`forget`); a miss recorded by a lookup
 * that was already running when the announcement came lasts at most `ttlMs`.
 */
export class CouponMisses {
  private readonly until = new Map<number, number>()
  private readonly ttlMs: number

  constructor(ttlMs: number) {
    this.ttlMs = ttlMs
  }

  /** True while `id` is a remembered miss. */
  has(id: number, now = Date.now()): boolean {
    const until = this.until.get(id)
    if (until === undefined) return false
    if (until > now) return true
    this.until.delete(id)
    return false
  }

  remember(id: number, now = Date.now()): void {
    if (this.ttlMs === 0) return
    if (this.until.size >= MAX_REMEMBERED) this.until.clear()
    this.until.set(id, now + this.ttlMs)
  }

  forget(id: number): void {
    this.until.delete(id)
  }
}
