import type { Coupon, IssueMode } from '../../domain/coupon.ts'
import { listActiveCoupons } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { subscribeWakeUps } from './wake-ups.ts'

/** One coupon a worker looks after, found by the key its admissions publish on the wake-up channel. */
export interface TrackedCoupon {
  coupon: Coupon
  /** The coupon's stream or queue key. */
  readonly key: string
}

export interface ActiveCouponsOptions<T extends TrackedCoupon> {
  /** The worker's name, for its logs and its subscriber connection. */
  name: string
  modes: IssueMode[]
  /** Coupons whose window closed less than this long ago are still looked after (a backlog left by an outage). */
  graceMs: number
  /** Coupons whose window opens within this long are looked after already (the first request finds a worker). */
  lookaheadMs: number
  /** How often the list is read again from Postgres (and at once when a coupon is created or changed). */
  refreshMs: number
  /** How often every coupon is swept (the safety net under the wake-ups). */
  sweepMs: number
  /** The worker's entry for a coupon it sees for the first time. */
  track(coupon: Coupon): T
  /** A coupon seen for the first time (its requests may have arrived before this process listened). */
  added(entry: T): Promise<void>
  /** An admission published the coupon's key: its first entry since the worker cleared the wake flag. */
  woken(entry: T): void
  /** Once per sweepMs, for every coupon (at most SWEEP_CONCURRENCY at a time); should not throw. */
  sweep(entry: T): Promise<void>
}

// Drain coupons whose sale opens within a minute and keep draining for an hour after it closes.
export const ACTIVE_LOOKAHEAD_MS = 60_000
export const ACTIVE_GRACE_MS = 3_600_000
/** Coupons handled concurrently by a refresh or a sweep (one pipelined command each, mostly). */
const SWEEP_CONCURRENCY = 64

/**
 * The scaffold of a worker that looks after the active coupons of its modes (the stream drainer, the queue
 * scheduler): keeps their list (refreshed from Postgres, and at once on a coupon change), routes the
 * wake-ups the admission scripts publish to their coupon, and sweeps every coupon once per sweepMs.
 * Nothing runs per coupon while it is idle: no loop, no blocking read, no connection.
 */
export class ActiveCoupons<T extends TrackedCoupon> {
  private readonly ctx: IssuanceContext
  private readonly options: ActiveCouponsOptions<T>
  private readonly byId = new Map<number, T>()
  private readonly byKey = new Map<string, T>()
  private running = false
  private loops: Promise<void>[] = []
  private refreshNow: () => void = () => {}
  private sweepNow: () => void = () => {}

  constructor(ctx: IssuanceContext, options: ActiveCouponsOptions<T>) {
    this.ctx = ctx
    this.options = options
  }

  /** Starts looking after the coupons (returns at once: Redis or Postgres may be away for now). */
  start(): void {
    if (this.running) return
    this.running = true
    this.loops = [this.refreshLoop(), this.sweepLoop()]
  }

  async stop(): Promise<void> {
    this.running = false
    this.refreshNow()
    this.sweepNow()
    await Promise.allSettled(this.loops)
  }

  /** The coupon's entry while it is active (and this scaffold running). */
  get(couponId: number): T | undefined {
    return this.running ? this.byId.get(couponId) : undefined
  }

  entries(): T[] {
    return [...this.byId.values()]
  }

  /** The active coupons as Postgres lists them now. */
  list(): Promise<Coupon[]> {
    const { modes, graceMs, lookaheadMs } = this.options
    return listActiveCoupons(this.ctx.db, modes, graceMs, lookaheadMs)
  }

  /** Subscribes to the wake-ups first, so a coupon drained once when added misses none after that. */
  private async refreshLoop(): Promise<void> {
    const unsubscribe = await subscribeWakeUps(this.ctx, `${this.options.name}-${process.pid}-sub`, {
      wake: (key) => {
        const entry = this.byKey.get(key)
        // Not (yet) an active coupon of these modes: the refresh handles it once when it shows up.
        if (entry !== undefined) this.options.woken(entry)
      },
      couponChanged: () => this.refreshNow(),
      // Wake-ups were missed meanwhile: sweep every coupon now.
      reconnected: () => this.sweepNow(),
    })
    try {
      while (this.running) {
        try {
          await this.refresh()
        } catch (error) {
          this.ctx.logger.warn({ err: error }, `${this.options.name}: refreshing active coupons failed`)
        }
        await this.pause(this.options.refreshMs, (wake) => {
          this.refreshNow = wake
        })
      }
    } finally {
      unsubscribe()
    }
  }

  private async refresh(): Promise<void> {
    const coupons = await this.list()
    const ids = new Set(coupons.map((coupon) => coupon.id))
    for (const [id, entry] of this.byId) {
      if (ids.has(id)) continue
      this.byId.delete(id)
      this.byKey.delete(entry.key)
    }
    const added: T[] = []
    for (const coupon of coupons) {
      const known = this.byId.get(coupon.id)
      if (known !== undefined) {
        known.coupon = coupon
        continue
      }
      const entry = this.options.track(coupon)
      this.byId.set(coupon.id, entry)
      this.byKey.set(entry.key, entry)
      added.push(entry)
    }
    await forEachLimited(added, SWEEP_CONCURRENCY, (entry) => this.options.added(entry))
  }

  private async sweepLoop(): Promise<void> {
    while (this.running) {
      await this.pause(this.options.sweepMs, (wake) => {
        this.sweepNow = wake
      })
      if (!this.running) return
      await forEachLimited(this.entries(), SWEEP_CONCURRENCY, (entry) => this.options.sweep(entry))
    }
  }

  private pause(ms: number, setWake: (wake: () => void) => void): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      setWake(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}

/** Runs `task` over `items` with at most `limit` in flight. */
async function forEachLimited<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await task(items[next++]!)
    }),
  )
}
