import {
  type Coupon,
  type CouponStats,
  couponStatus,
  type Issuance,
  type IssueMode,
  type PublicCoupon,
} from '../../domain/coupon.ts'
import { AppError } from '../../domain/errors.ts'
import { channels } from '../../redis/keys.ts'
import { fairnessSecrets, insertCoupon, listCoupons, type NewCoupon } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'
import type { IssuanceMode, RequestOutcome } from '../core/mode.ts'
import { CouponCache } from '../plumbing/coupon-cache.ts'
import { auditCoupon, type CouponAudit } from './audit.ts'
import { ENABLED_BY } from './modes.ts'

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
    const remaining = await this.modeOf(coupon).remaining(coupon)
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
      const [seconds] = await this.ctx.redis.time()
      if (Number(seconds) * 1000 < coupon.issueStartsAt.getTime()) return view
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
  request(coupon: Coupon, userId: string): Promise<RequestOutcome> {
    // The issue window is checked inside the mode's Redis script, on Redis's clock (issue 19).
    return this.modeOf(coupon).request(coupon, userId)
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
    const { recordsEveryRequest } = this.modeOf(coupon)
    return auditCoupon(this.ctx, coupon, { recordsEveryRequest })
  }

  async status(id: number, userId: string): Promise<Issuance> {
    const coupon = await this.get(id)
    const issuance = await this.modeOf(coupon).status(coupon, userId)
    if (issuance === undefined) throw new AppError('NOT_REQUESTED', `user has not requested coupon ${id}`)
    return issuance
  }

  async stats(coupon: Coupon): Promise<CouponStats> {
    return this.modeOf(coupon).stats(coupon)
  }
}
