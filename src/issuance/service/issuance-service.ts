import {
  type Coupon,
  type CouponStats,
  couponStatus,
  type Issuance,
  type IssueMode,
  type PublicCoupon,
} from '../../domain/coupon.ts'
import { type CouponPatch, planCouponChange } from '../../domain/coupon-change.ts'
import { AppError, unavailable } from '../../domain/errors.ts'
import { redisNowMs } from '../../redis/client.ts'
import { channels } from '../../redis/keys.ts'
import { takeLease } from '../../redis/leases.ts'
import {
  type CouponChange,
  changeCoupon,
  deleteCoupon,
  listCouponChanges,
} from '../../storage/coupon-changes.ts'
import { fairnessSecrets, insertCoupon, listCoupons, type NewCoupon } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { type CouponState, CouponStates } from '../core/coupon-state.ts'
import type { IssuanceMode, RequestOutcome } from '../core/mode.ts'
import { SaleReleasedError, scheduleOf } from '../core/rebuild.ts'
import { CouponCache } from '../plumbing/coupon-cache.ts'
import { auditCoupon, type CouponAudit } from './audit.ts'
import { ENABLED_BY } from './modes.ts'
import { releasedAudit, releasedStats, releasedStatus } from './released.ts'

/** How long a deleted coupon's closed Redis state stays (answering sold out to processes not told yet). */
const RETIRED_STATE_MS = 600_000

/** The coupon use cases behind the HTTP API, dispatching issuance to the coupon's mode. */
export class IssuanceService {
  readonly cache: CouponCache
  private readonly ctx: IssuanceContext
  private readonly modes: Map<IssueMode, IssuanceMode>
  /** Seeds shown once their coupon started (they never change). */
  private readonly revealedSeeds = new Map<number, string>()
  private readonly states: CouponStates

  constructor(ctx: IssuanceContext, modes: IssuanceMode[]) {
    this.ctx = ctx
    this.modes = new Map(modes.map((mode) => [mode.mode, mode]))
    this.cache = new CouponCache(ctx.db)
    this.states = new CouponStates(ctx)
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
    await this.announce(coupon)
    return coupon
  }

  /** Keeps the coupon in this process and tells every other process to drop its copy (coupon-changed). */
  private async announce(coupon: Coupon): Promise<void> {
    // This process at once (its sold-out memo too), without waiting for its own message to come back.
    this.forget(coupon.id)
    this.cache.set(coupon)
    await this.ctx.redis.publish(channels(this.ctx.redisPrefix).couponChanged, String(coupon.id))
  }

  /**
   * PATCH /admin/coupons/{id}: steers a sale (rules in domain/coupon-change.ts), recorded with `admin`.
   * Added stock is committed in Postgres first, then added to Redis's stock atomically with admissions, under
   * the coupon's rebuild lease so a rebuild running meanwhile cannot restore the old quantity over it.
   */
  async updateCoupon(id: number, patch: CouponPatch, admin: string): Promise<Coupon> {
    // One hold of the rebuild lease for the Postgres change and its Redis side, so a rebuild that read the
    // row before the change cannot restore the old quantity or schedule after it (one after it reads the
    // changed row). Redis before the announcement: a memo dropped by it must not re-learn "sold out" from
    // the old schedule.
    const planned = await this.withRebuildLease(id, async (state) => {
      const change = await changeCoupon(this.ctx.db, id, admin, (coupon) =>
        planCouponChange(coupon, patch, new Date()),
      )
      const { updated, addedStock } = change
      if (addedStock > 0) await state.addStock(updated.quantity, updated.quantity - addedStock)
      if (Object.keys(change.change).length > 0) await state.setSchedule(scheduleOf(updated))
      return change
    })
    if (Object.keys(planned.change).length > 0) await this.announce(planned.updated)
    return planned.updated
  }

  private async withRebuildLease<T>(couponId: number, work: (state: CouponState) => Promise<T>): Promise<T> {
    const state = this.states.of(couponId)
    for (let attempt = 0; attempt < 200; attempt++) {
      const lease = await takeLease(this.ctx.redis, state.keys.rebuildLease, 30_000)
      if (lease !== undefined) {
        try {
          return await work(state)
        } finally {
          await lease.release()
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    throw unavailable('coupon state (a rebuild is running)')
  }

  /**
   * DELETE /admin/coupons/{id}, for a coupon nobody has requested (COUPON_REQUESTED otherwise). Redis
   * closes it to admissions atomically first (stock 0, so a process that has not heard of the deletion yet
   * answers sold out, never accepted), then Postgres deletes the row if it has no user's row. The closed
   * state is kept for RETIRED_STATE_MS, then expires.
   */
  async deleteCoupon(id: number, admin: string): Promise<void> {
    const coupon = await this.get(id)
    // A Redis that lost the coupon's state could hide requests: load it first (sync reads Postgres).
    await this.modes.get(coupon.issueMode)?.remaining(coupon)
    const state = this.states.of(id)
    let closed = false
    try {
      await deleteCoupon(this.ctx.db, id, admin, async () => {
        const verdict = await state.retireUnrequested()
        if (verdict === 'requested') throw new AppError('COUPON_REQUESTED', `coupon ${id} has been requested`)
        closed = verdict === 'closed'
      })
    } catch (error) {
      // Still there: drop the closed state so the next admission rebuilds it from Postgres.
      if (closed) await this.ctx.redis.del(state.keys.state)
      throw error
    }
    this.forget(id)
    await this.ctx.redis.publish(channels(this.ctx.redisPrefix).couponChanged, String(id))
    await state.expireAll(RETIRED_STATE_MS)
  }

  /** GET /admin/coupons/{id}/history: every recorded change, oldest first (a deleted coupon's too). */
  async history(id: number, afterId = 0): Promise<CouponChange[]> {
    const changes = await listCouponChanges(this.ctx.db, id, afterId)
    if (changes.length === 0 && afterId === 0) await this.get(id)
    return changes
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
      minOrderAmount: coupon.minOrderAmount,
      ...(await this.prequeueView(coupon)),
    }
  }

  /**
   * The pre-queue on the public view: its opening, order and seed commitment, and from the start (on Redis's
   * clock) the seed itself, so anyone can recompute the shuffle.
   */
  private async prequeueView(coupon: Coupon): Promise<Partial<PublicCoupon>> {
    if (coupon.prequeueStartsAt === null || coupon.seedCommitment === null) return {}
    const view: Partial<PublicCoupon> = {
      prequeueStartsAt: coupon.prequeueStartsAt.toISOString(),
      prequeueOrder: coupon.prequeueOrder ?? 'arrival',
      seedCommitment: coupon.seedCommitment,
      prequeueLength: await this.states.of(coupon.id).prequeueLength(),
    }
    let seed = this.revealedSeeds.get(coupon.id)
    if (seed === undefined) {
      if ((await redisNowMs(this.ctx.redis)) < coupon.issueStartsAt.getTime()) return view
      seed = (await fairnessSecrets(this.ctx.db, coupon.id)).seed?.toString('hex')
      if (seed === undefined) return view
      this.revealedSeeds.set(coupon.id, seed)
    }
    return { ...view, seed }
  }

  /**
   * POST /coupons/{id}/issuance: the hot path. The coupon comes from memory; the mode does one Redis call,
   * or none once the coupon is known to be sold out and the user holds no request (its sold-out memo).
   */
  async request(coupon: Coupon, userId: string): Promise<RequestOutcome> {
    // The issue window is checked inside the mode's Redis script, on Redis's clock (issue 19). A released
    // sale has ended (it is released after its end): answered as the script answered before, without Redis.
    if (coupon.releasedAt !== undefined) this.lateRequest(coupon)
    try {
      return await this.modeOf(coupon).request(coupon, userId)
    } catch (error) {
      // A process whose cached coupon did not know of the release yet: the sale has ended.
      if (!(error instanceof SaleReleasedError)) throw error
      this.cache.invalidate(coupon.id)
      return this.lateRequest(coupon)
    }
  }

  /** The coupon if this process has it in memory: no lookup (http/sold-out-door.ts answers without one). */
  cachedCoupon(id: number): Coupon | undefined {
    return this.cache.peek(id)
  }

  /** True when `refusesFromMemory` may refuse requests for this coupon now: cheap, and it counts nothing. */
  knowsSoldOut(coupon: Coupon): boolean {
    return coupon.releasedAt === undefined && this.modeOf(coupon).knowsSoldOut?.(coupon) === true
  }

  /**
   * True when `request` would answer SOLD_OUT from the mode's memory, without Redis; the refusal is then
   * counted as `request` counts it. False when `request` must answer.
   */
  refusesFromMemory(coupon: Coupon, userId: string): boolean {
    if (coupon.releasedAt !== undefined) return false
    return this.modeOf(coupon).refusesFromMemory?.(coupon, userId) === true
  }

  /** A request on a released sale: it has ended (released only after its end), for holders too. */
  private lateRequest(coupon: Coupon): never {
    throw new AppError('ISSUE_ENDED', `issuance ended at ${coupon.issueEndsAt.toISOString()}`)
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
