import { Cron } from 'croner'
import type { Coupon } from '../../domain/coupon.ts'
import type { IssuanceContext } from '../core/context.ts'
import { type CouponState, CouponStates } from '../core/coupon-state.ts'
import type { IssuanceWorker } from '../core/mode.ts'
import { StateLoader } from '../core/rebuild.ts'
import {
  ACTIVE_GRACE_MS,
  ACTIVE_LOOKAHEAD_MS,
  ActiveCoupons,
  type TrackedCoupon,
} from '../plumbing/active-coupons.ts'
import {
  DEFAULT_QUEUE_DRAIN,
  type DrainOutcome,
  drainQueue,
  type QueueDrainOptions,
  queuePending,
} from './queue-drain.ts'

export interface QueueSchedulerOptions extends Partial<QueueDrainOptions> {
  /** Cron pattern, 5 or 6 fields (seconds first), e.g. `* * * * * *` or the ten-minute `0 *\/10 * * * *`. */
  cron: string
  /** Coupons whose window closed less than this long ago are still drained (their queue backlog). */
  graceMs?: number
}

/** How often every active coupon's queue is counted (one ZCARD each), under the wake-ups. */
const SWEEP_MS = 10_000
const REFRESH_MS = 1_000

/** One active queue coupon (`key`: its queue). */
interface QueueCoupon extends TrackedCoupon {
  state: CouponState
}

/**
 * The cron scheduler: on every tick drains the queue of each active `queue` coupon that has waiting users.
 * Runs in any number of processes; a per-coupon lease keeps one drainer per coupon at a time, and a tick
 * still running when the next is due is skipped (`protect`).
 *
 * An idle coupon costs a tick nothing: the admission script publishes the queue's key on the wake-up
 * channel when the queue gets its first user since the scheduler last cleared the coupon's wake flag, and a
 * tick drains only the coupons woken since (clearing the flag first). Every SWEEP_MS every active queue is
 * counted too (a missed wake-up, a drainer that died mid-queue).
 */
export class QueueScheduler implements IssuanceWorker {
  readonly name = 'queue-scheduler'
  readonly pattern: string
  private readonly ctx: IssuanceContext
  private readonly drainOptions: QueueDrainOptions
  private readonly states: CouponStates
  private readonly loader: StateLoader
  private readonly active: ActiveCoupons<QueueCoupon>
  /** Never scheduled: validates the pattern up front and answers `nextRun`. */
  private readonly calendar: Cron
  private job: Cron | undefined
  private readonly ticks = new Set<Promise<DrainOutcome[]>>()
  /** Coupons woken (or found waiting by a sweep) since they were last drained here. */
  private readonly due = new Set<number>()

  constructor(ctx: IssuanceContext, options: QueueSchedulerOptions) {
    this.ctx = ctx
    this.pattern = options.cron
    this.calendar = new Cron(options.cron)
    this.drainOptions = {
      batchSize: options.batchSize ?? DEFAULT_QUEUE_DRAIN.batchSize,
      leaseMs: options.leaseMs ?? DEFAULT_QUEUE_DRAIN.leaseMs,
    }
    this.states = new CouponStates(ctx)
    this.loader = new StateLoader(ctx, this.states, queuePending(this.states))
    this.active = new ActiveCoupons<QueueCoupon>(ctx, {
      name: this.name,
      modes: ['queue'],
      graceMs: options.graceMs ?? ACTIVE_GRACE_MS,
      lookaheadMs: ACTIVE_LOOKAHEAD_MS,
      refreshMs: REFRESH_MS,
      sweepMs: SWEEP_MS,
      track: (coupon) => {
        const state = this.states.of(coupon.id)
        return { coupon, state, key: state.keys.queue }
      },
      // Users may have queued before this process listened (a restart): the next tick drains it once.
      added: async ({ coupon }) => {
        this.due.add(coupon.id)
        // Not fatal: a drain loads what is missing, and admission rebuilds a lost coupon by itself.
        await this.loader.ensureLoaded(coupon).catch((error: unknown) => {
          this.ctx.logger.warn({ err: error, couponId: coupon.id }, `${this.name}: loading a coupon failed`)
        })
      },
      woken: ({ coupon }) => this.due.add(coupon.id),
      sweep: async ({ coupon, key }) => {
        try {
          if ((await this.ctx.redis.zcard(key)) > 0) this.due.add(coupon.id)
        } catch (error) {
          this.ctx.logger.warn({ err: error, couponId: coupon.id }, `${this.name}: sweep failed`)
        }
      },
    })
  }

  /** When the cron pattern next fires after `from` (default now). */
  nextRun(from?: Date): Date | null {
    return this.calendar.nextRun(from)
  }

  async start(): Promise<void> {
    if (this.job !== undefined) return
    this.active.start()
    this.job = new Cron(
      this.pattern,
      {
        protect: true,
        catch: (error) => this.ctx.logger.error({ err: error }, `${this.name}: tick failed`),
      },
      () => this.track(this.tickDue()).then(() => undefined),
    )
  }

  async stop(): Promise<void> {
    this.job?.stop()
    this.job = undefined
    await this.active.stop()
    await Promise.allSettled(this.ticks)
  }

  /** Drains every active queue coupon now, woken or not (tests, and a run by hand). */
  drainOnce(): Promise<DrainOutcome[]> {
    return this.track(this.active.list().then((coupons) => this.drainAll(coupons)))
  }

  private track(tick: Promise<DrainOutcome[]>): Promise<DrainOutcome[]> {
    const tracked = tick.finally(() => this.ticks.delete(tracked))
    this.ticks.add(tracked)
    return tracked
  }

  /** Drains one coupon now (does nothing if another process holds its lease). */
  drainCoupon(coupon: Coupon): Promise<DrainOutcome> {
    return drainQueue(this.ctx, this.states.of(coupon.id), coupon, this.drainOptions)
  }

  /** What the cron runs: drains the coupons woken (or found waiting) since their last drain. */
  private async tickDue(): Promise<DrainOutcome[]> {
    if (this.due.size === 0) return []
    // Coupons no longer active are never drained here.
    const woken = this.active
      .entries()
      .filter((entry) => this.due.has(entry.coupon.id))
      .map((entry) => entry.coupon)
    this.due.clear()
    const outcomes = await this.drainAll(woken, async (coupon) => {
      await this.states.of(coupon.id).clearWake()
    })
    // Held by another process's drain, or failed: try again at the next tick.
    const drained = new Set(outcomes.filter((outcome) => outcome.drained).map((outcome) => outcome.couponId))
    for (const coupon of woken) if (!drained.has(coupon.id)) this.due.add(coupon.id)
    return outcomes
  }

  private async drainAll(
    coupons: Coupon[],
    beforeDrain: (coupon: Coupon) => Promise<void> = async () => {},
  ): Promise<DrainOutcome[]> {
    const outcomes = await Promise.all(
      coupons.map(async (coupon) => {
        try {
          // Redis may have lost the coupon: rebuild it so admission and `remaining` work again.
          await this.loader.ensureLoaded(coupon)
          await beforeDrain(coupon)
          return await this.drainCoupon(coupon)
        } catch (error) {
          this.ctx.logger.warn(
            { err: error, couponId: coupon.id },
            `${this.name}: draining failed, next tick retries`,
          )
          return undefined
        }
      }),
    )
    return outcomes.filter((outcome) => outcome !== undefined)
  }
}
