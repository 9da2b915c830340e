import { Cron } from 'croner'
import type { Coupon } from '../../domain/coupon.ts'
import { couponKeys } from '../../redis/keys.ts'
import { listActiveCoupons } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../context.ts'
import { clearWake, ensureLoaded, type PendingSource } from '../coupon-store.ts'
import type { IssuanceWorker } from '../mode.ts'
import { subscribeWakeUps } from '../wake-ups.ts'
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

/** How often a tick also looks at every active coupon's queue (one ZCARD each), under the wake-ups. */
const SWEEP_MS = 10_000
const SWEEP_CONCURRENCY = 64

/**
 * The seed's scheduler: on every cron tick drains the queue of each active `queue` coupon that has waiting
 * users. Runs in any number of processes; a per-coupon lease keeps one drainer per coupon at a time, and a
 * tick still running when the next is due is skipped (`protect`).
 *
 * An idle coupon costs a tick nothing: the admission script publishes the queue's key on the wake-up
 * channel when the queue gets its first user since the scheduler last cleared the coupon's wake flag, and a
 * tick drains only the coupons woken since (clearing the flag first). At most every SWEEP_MS a tick also
 * counts every active queue (a missed wake-up, a drainer that died mid-queue).
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
  /** Queue keys woken since their coupon was last drained here. */
  private readonly due = new Set<string>()
  private lastSweepMs = 0
  private unsubscribe: (() => void) | undefined

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
    this.lastSweepMs = 0
    this.unsubscribe = await subscribeWakeUps(this.ctx, `${this.name}-${process.pid}-sub`, {
      // The channel also carries the streams' keys (stream, kafka): only queues are kept.
      wake: (key) => {
        if (key.endsWith('}:queue')) this.due.add(key)
      },
      couponChanged: () => {},
      // Wake-ups were missed meanwhile: the next tick counts every queue.
      reconnected: () => {
        this.lastSweepMs = 0
      },
    })
    try {
      for (const coupon of await this.activeCoupons()) await ensureLoaded(this.ctx, coupon, this.pending)
    } catch (error) {
      // Not fatal: a drain loads what is missing, and admission rebuilds a lost coupon by itself.
      this.ctx.logger.warn({ err: error }, `${this.name}: loading active coupons failed`)
    }
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
    this.unsubscribe?.()
    this.unsubscribe = undefined
    await Promise.allSettled(this.ticks)
  }

  /** Drains every active queue coupon now, woken or not (tests, and a run by hand). */
  drainOnce(): Promise<DrainOutcome[]> {
    return this.track(this.activeCoupons().then((coupons) => this.drainAll(coupons)))
  }

  private track(tick: Promise<DrainOutcome[]>): Promise<DrainOutcome[]> {
    const tracked = tick.finally(() => this.ticks.delete(tracked))
    this.ticks.add(tracked)
    return tracked
  }

  /** Drains one coupon now (does nothing if another process holds its lease). */
  drainCoupon(coupon: Coupon): Promise<DrainOutcome> {
    return drainQueue(this.ctx, coupon, this.drainOptions)
  }

  /** What the cron runs: drains the coupons woken since their last drain (and, every SWEEP_MS, counts all). */
  private async tickDue(): Promise<DrainOutcome[]> {
    const sweep = Date.now() - this.lastSweepMs >= SWEEP_MS
    if (!sweep && this.due.size === 0) return []
    const coupons = await this.activeCoupons()
    const keyOf = (coupon: Coupon) => couponKeys(this.ctx.redisPrefix, coupon.id).queue
    if (sweep) {
      this.lastSweepMs = Date.now()
      let next = 0
      await Promise.all(
        Array.from({ length: Math.min(SWEEP_CONCURRENCY, coupons.length) }, async () => {
          while (next < coupons.length) {
            const key = keyOf(coupons[next++]!)
            if ((await this.ctx.redis.zcard(key)) > 0) this.due.add(key)
          }
        }),
      )
    }
    const woken = coupons.filter((coupon) => this.due.has(keyOf(coupon)))
    // Keys of other modes' streams, and of coupons no longer active, are never drained here.
    this.due.clear()
    const outcomes = await this.drainAll(woken, async (coupon) => {
      await clearWake(this.ctx, coupon.id)
    })
    // Held by another process's drain, or failed: try again at the next tick.
    const drained = new Set(outcomes.filter((outcome) => outcome.drained).map((outcome) => outcome.couponId))
    for (const coupon of woken) if (!drained.has(coupon.id)) this.due.add(keyOf(coupon))
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
          await ensureLoaded(this.ctx, coupon, this.pending)
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

  private activeCoupons(): Promise<Coupon[]> {
    return listActiveCoupons(this.ctx.db, ['queue'], this.graceMs)
  }
}
