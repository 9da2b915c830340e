import { Cron } from 'croner'
import type { Coupon } from '../../domain/coupon.ts'
import { listActiveCoupons } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../context.ts'
import { ensureLoaded, type PendingSource } from '../coupon-store.ts'
import type { IssuanceWorker } from '../mode.ts'
import {
  DEFAULT_QUEUE_DRAIN,
  type DrainOutcome,
  drainQueue,
  type QueueDrainOptions,
  queuePending,
} from './queue-drain.ts'

export interface QueueSchedulerOptions extends Partial<QueueDrainOptions> {
  /** Cron pattern, 5 or 6 fields (seconds first), e.g. `* * * * * *` or the seed's `0 *\/10 * * * *`. */
  cron: string
  /** Coupons whose window closed less than this long ago are still drained (their queue backlog). */
  graceMs?: number
}

/**
 * The seed's scheduler: on every cron tick drains the queue of each active `queue` coupon. Runs in any
 * number of processes; a per-coupon lease keeps one drainer per coupon at a time, and a tick still running
 * when the next is due is skipped (`protect`).
 */
export class QueueScheduler implements IssuanceWorker {
  readonly name = 'queue-scheduler'
  readonly pattern: string
  private readonly ctx: IssuanceContext
  private readonly drainOptions: QueueDrainOptions
  private readonly graceMs: number
  private readonly pending: PendingSource
  /** Never scheduled: validates the pattern up front and answers `nextRun`. */
  private readonly calendar: Cron
  private job: Cron | undefined
  private readonly ticks = new Set<Promise<DrainOutcome[]>>()

  constructor(ctx: IssuanceContext, options: QueueSchedulerOptions) {
    this.ctx = ctx
    this.pattern = options.cron
    this.calendar = new Cron(options.cron)
    this.drainOptions = {
      batchSize: options.batchSize ?? DEFAULT_QUEUE_DRAIN.batchSize,
      leaseMs: options.leaseMs ?? DEFAULT_QUEUE_DRAIN.leaseMs,
    }
    this.graceMs = options.graceMs ?? 3_600_000
    this.pending = queuePending(ctx)
  }

  /** When the cron pattern next fires after `from` (default now). */
  nextRun(from?: Date): Date | null {
    return this.calendar.nextRun(from)
  }

  async start(): Promise<void> {
    if (this.job !== undefined) return
    try {
      for (const coupon of await this.activeCoupons()) await ensureLoaded(this.ctx, coupon, this.pending)
    } catch (error) {
      // Not fatal: every tick loads what is missing again.
      this.ctx.logger.warn({ err: error }, `${this.name}: loading active coupons failed`)
    }
    this.job = new Cron(
      this.pattern,
      {
        protect: true,
        catch: (error) => this.ctx.logger.error({ err: error }, `${this.name}: tick failed`),
      },
      () => this.drainOnce().then(() => undefined),
    )
  }

  async stop(): Promise<void> {
    this.job?.stop()
    this.job = undefined
    await Promise.allSettled(this.ticks)
  }

  /** One tick: drains every active queue coupon (what the cron runs; tests call it directly). */
  drainOnce(): Promise<DrainOutcome[]> {
    const tick = this.tick().finally(() => this.ticks.delete(tick))
    this.ticks.add(tick)
    return tick
  }

  /** Drains one coupon now (does nothing if another process holds its lease). */
  drainCoupon(coupon: Coupon): Promise<DrainOutcome> {
    return drainQueue(this.ctx, coupon, this.drainOptions)
  }

  private async tick(): Promise<DrainOutcome[]> {
    const coupons = await this.activeCoupons()
    const outcomes = await Promise.all(
      coupons.map(async (coupon) => {
        try {
          // Redis may have lost the coupon: rebuild it so admission and `remaining` work again.
          await ensureLoaded(this.ctx, coupon, this.pending)
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

  private activeCoupons(): Promise<Coupon[]> {
    return listActiveCoupons(this.ctx.db, ['queue'], this.graceMs)
  }
}
