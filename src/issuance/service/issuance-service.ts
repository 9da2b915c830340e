import {
  assertIssuing,
  type Coupon,
  type CouponStats,
  couponStatus,
  type Issuance,
  type IssueMode,
  type PublicCoupon,
} from '../../domain/coupon.ts'
import { AppError } from '../../domain/errors.ts'
import { channels } from '../../redis/keys.ts'
import { insertCoupon, listCoupons, type NewCoupon } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import type { IssuanceMode, RequestOutcome } from '../core/mode.ts'
import { SaleReleasedError } from '../core/rebuild.ts'
import { CouponCache } from '../plumbing/coupon-cache.ts'
import { auditCoupon, type CouponAudit } from './audit.ts'
import { ENABLED_BY } from './modes.ts'
import { releasedAudit, releasedStats, releasedStatus } from './released.ts'

/** The coupon use cases behind the HTTP API, dispatching issuance to the coupon's mode. */
export class IssuanceService {
  readonly cache: CouponCache
  private readonly ctx: IssuanceContext
  private readonly modes: Map<IssueMode, IssuanceMode>

  constructor(ctx: IssuanceContext, modes: IssuanceMode[]) {
    this.ctx = ctx
    this.modes = new Map(modes.map((mode) => [mode.mode, mode]))
    this.cache = new CouponCache(ctx.db)
  }

  /** Requests answered from memory, without a Redis round trip (for /metrics). */
  get refusedFromMemory(): number {
    let count = 0
    for (const mode of this.modes.values()) count += mode.answeredFromMemory?.() ?? 0
    return count
  }

  availableModes(): IssueMode[] {
    return [...this.modes.keys()]
  }

  modeOf(coupon: Coupon): IssuanceMode {
    const mode = this.modes.get(coupon.issueMode)
    if (mode === undefined) {
      throw new AppError('MODE_UNAVAILABLE', `issue mode "${coupon.issueMode}" is not enabled on this server`)
    }
    return mode
  }

  async createCoupon(input: NewCoupon): Promise<Coupon> {
    const mode = this.modes.get(input.issueMode)
    if (mode === undefined) {
      const hint = ENABLED_BY[input.issueMode]
      throw new AppError(
        'MODE_UNAVAILABLE',
        `issue mode "${input.issueMode}" is not enabled${hint === undefined ? '' : ` (${hint})`}`,
      )
    }
    const coupon = await insertCoupon(this.ctx.db, input, (coupon) => mode.prepare(coupon))
    this.cache.set(coupon)
    await this.ctx.redis.publish(channels(this.ctx.redisPrefix).couponChanged, String(coupon.id))
    return coupon
  }

  async list(limit: number, beforeId?: number): Promise<Coupon[]> {
    return listCoupons(this.ctx.db, limit, beforeId)
  }

  async get(id: number): Promise<Coupon> {
    const coupon = await this.cache.get(id)
    if (coupon === undefined) throw new AppError('COUPON_NOT_FOUND', `no coupon ${id}`)
    return coupon
  }

  async publicView(id: number, now = new Date()): Promise<PublicCoupon> {
    const coupon = await this.get(id)
    const remaining = await this.fromRedisUnlessReleased(
      coupon,
      (live) => this.modeOf(live).remaining(live),
      async (released) => (await releasedStats(this.ctx.db, released)).remaining,
    )
    return {
      id: coupon.id,
      name: coupon.name,
      discount: coupon.discount,
      quantity: coupon.quantity,
      remaining,
      status: couponStatus(coupon, remaining, now),
      issueStartsAt: coupon.issueStartsAt.toISOString(),
      issueEndsAt: coupon.issueEndsAt.toISOString(),
      issueMode: coupon.issueMode,
    }
  }

  /**
   * POST /coupons/{id}/issuance: the hot path. The coupon comes from memory; the mode does one Redis call,
   * or none once the coupon is known to be sold out and the user holds no request (its sold-out memo).
   */
  async request(coupon: Coupon, userId: string): Promise<RequestOutcome> {
    assertIssuing(coupon, new Date())
    try {
      return await this.modeOf(coupon).request(coupon, userId)
    } catch (error) {
      // Only a process whose clock runs behind the releaser's gets here: the sale has ended.
      if (!(error instanceof SaleReleasedError)) throw error
      this.cache.invalidate(coupon.id)
      throw new AppError('ISSUE_ENDED', `issuance ended at ${coupon.issueEndsAt.toISOString()}`)
    }
  }

  /** A coupon was created or changed (announced by any process): drop what this process remembers of it. */
  forget(couponId: number): void {
    this.cache.invalidate(couponId)
    for (const mode of this.modes.values()) mode.forget?.(couponId)
  }

  /** Closes every mode (timers, connections). */
  async close(): Promise<void> {
    await Promise.all([...this.modes.values()].map((mode) => mode.close?.()))
  }

  /** GET /admin/coupons/{id}/audit: the coupon's Redis state reconciled against Postgres. */
  audit(coupon: Coupon): Promise<CouponAudit> {
    return this.fromRedisUnlessReleased(
      coupon,
      (live) => auditCoupon(this.ctx, live, { recordsEveryRequest: this.modeOf(live).recordsEveryRequest }),
      (released) => releasedAudit(this.ctx.db, released),
    )
  }

  async status(id: number, userId: string): Promise<Issuance> {
    const coupon = await this.get(id)
    const issuance = await this.fromRedisUnlessReleased(
      coupon,
      (live) => this.modeOf(live).status(live, userId),
      (released) => releasedStatus(this.ctx.db, released, userId),
    )
    if (issuance === undefined) throw new AppError('NOT_REQUESTED', `user has not requested coupon ${id}`)
    return issuance
  }

  async stats(coupon: Coupon): Promise<CouponStats> {
    return this.fromRedisUnlessReleased(
      coupon,
      (live) => this.modeOf(live).stats(live),
      (released) => releasedStats(this.ctx.db, released),
    )
  }

  /**
   * A read of the coupon's state: from its mode (Redis) while the sale holds Redis state, from Postgres once
   * it was released. A cached coupon that missed the release finds out when the mode would rebuild it.
   */
  private async fromRedisUnlessReleased<T>(
    coupon: Coupon,
    live: (coupon: Coupon) => Promise<T>,
    released: (coupon: Coupon) => Promise<T>,
  ): Promise<T> {
    // The caller's copy may be older than the release (an admin's event stream holds one for its lifetime):
    // the cache's, dropped when the release was announced, is not.
    const current = coupon.releasedAt === undefined ? ((await this.cache.get(coupon.id)) ?? coupon) : coupon
    if (current.releasedAt !== undefined) return released(current)
    try {
      return await live(current)
    } catch (error) {
      if (!(error instanceof SaleReleasedError)) throw error
      this.cache.invalidate(coupon.id)
      return released(current)
    }
  }
}
