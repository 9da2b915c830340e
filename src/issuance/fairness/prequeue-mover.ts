import { setTimeout as sleep } from 'node:timers/promises'
import type { Coupon } from '../../domain/coupon.ts'
import { fairnessSecrets } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { type CouponState, CouponStates } from '../core/coupon-state.ts'
import { publishDecisions } from '../core/decisions.ts'
import type { IssuanceWorker } from '../core/mode.ts'
import { ACTIVE_GRACE_MS, ACTIVE_LOOKAHEAD_MS, ActiveCoupons } from '../plumbing/active-coupons.ts'
import { shuffledOrder } from './shuffle.ts'

export interface PrequeueMoverOptions {
  /** Users moved per script call (one atomic step each). */
  batch: number
  /** The safety net under the start timers. */
  sweepMs: number
}

interface Tracked {
  coupon: Coupon
  readonly key: string
  timer?: NodeJS.Timeout
  /** The start the timer was set for (a changed schedule sets it again). */
  timerFor?: number
  moving?: Promise<void>
  done?: boolean
}

const RANK_CHUNK = 1_000
/** How long the mover retries "not started" once its process clock says the start passed (clocks differ). */
const START_POLL_MS = 5

/**
 * Moves each coupon's pre-queue into its mode's admission at the start (stream and kafka: the stream;
 * queue: the waiting queue), batch by batch, each batch one atomic script whose pre-queue is its own cursor:
 * a crash or failover mid-way admits none twice and loses none, and any number of processes may run it.
 * Redis's clock decides the start: this process's clock only sets the timer that wakes it.
 */
export class PrequeueMover implements IssuanceWorker {
  readonly name = 'prequeue-mover'
  private readonly ctx: IssuanceContext
  private readonly states: CouponStates
  private readonly options: PrequeueMoverOptions
  private readonly coupons: ActiveCoupons<Tracked>
  private running = false

  constructor(ctx: IssuanceContext, options: Partial<PrequeueMoverOptions> = {}) {
    this.ctx = ctx
    this.states = new CouponStates(ctx)
    this.options = { batch: 2_000, sweepMs: 1_000, ...options }
    this.coupons = new ActiveCoupons<Tracked>(ctx, {
      name: this.name,
      modes: ['stream', 'queue', 'kafka'],
      graceMs: ACTIVE_GRACE_MS,
      lookaheadMs: ACTIVE_LOOKAHEAD_MS,
      refreshMs: 5_000,
      sweepMs: this.options.sweepMs,
      track: (coupon) => ({ coupon, key: this.states.of(coupon.id).keys.prequeue }),
      added: async (entry) => this.schedule(entry),
      woken: () => {},
      sweep: async (entry) => {
        this.schedule(entry)
        await this.moveAll(entry, false)
      },
    })
  }

  async start(): Promise<void> {
    this.running = true
    this.coupons.start()
  }

  async stop(): Promise<void> {
    this.running = false
    for (const entry of this.coupons.entries()) clearTimeout(entry.timer)
    await this.coupons.stop()
    await Promise.allSettled(this.coupons.entries().map((entry) => entry.moving))
  }

  /** Sets the timer that wakes the move at the start (once per coupon). */
  private schedule(entry: Tracked): void {
    const startMs = entry.coupon.issueStartsAt.getTime()
    if (entry.coupon.prequeueStartsAt === null || entry.done || entry.timerFor === startMs) return
    clearTimeout(entry.timer)
    entry.timerFor = startMs
    entry.timer = setTimeout(() => void this.moveAll(entry, true), Math.max(startMs - Date.now(), 0))
  }

  /**
   * Moves the coupon's whole pre-queue (one run at a time per coupon in this process). The timer waits for
   * Redis's clock to reach the start; a sweep tries once (Redis answers "not started" until then).
   */
  private moveAll(entry: Tracked, waitForStart: boolean): Promise<void> {
    if (entry.coupon.prequeueStartsAt === null || entry.done || !this.running) return Promise.resolve()
    entry.moving ??= this.move(entry, waitForStart)
      .catch((error: unknown) =>
        this.ctx.logger.warn({ err: error, couponId: entry.coupon.id }, 'pre-queue: moving failed (retried)'),
      )
      .finally(() => {
        entry.moving = undefined
      })
    return entry.moving
  }

  private async move(entry: Tracked, waitForStart: boolean): Promise<void> {
    const { coupon } = entry
    const state = this.states.of(coupon.id)
    const outbox = coupon.issueMode === 'queue' ? 'queue' : 'stream'
    const startedAt = Date.now()
    let moved = 0
    while (this.running) {
      const reply = await state.movePrequeue(outbox, this.options.batch)
      if (reply.kind === 'notLoaded') return
      if (reply.kind === 'notStarted') {
        // Redis's clock is behind this one: poll briefly; the sweep takes over if it is far behind.
        if (!waitForStart || Date.now() - startedAt > 2_000) return
        await sleep(START_POLL_MS)
        continue
      }
      if (reply.kind === 'notShuffled') {
        const shuffleStarted = Date.now()
        await this.shuffle(coupon, state)
        this.ctx.logger.debug({ couponId: coupon.id, ms: Date.now() - shuffleStarted }, 'pre-queue shuffled')
        continue
      }
      moved += reply.moved
      await publishDecisions(state, reply.soldOutPairs)
      if (reply.left === 0) {
        entry.done = true
        if (moved > 0) {
          const ms = Date.now() - startedAt
          this.ctx.logger.info({ couponId: coupon.id, moved, ms }, 'pre-queue moved into admission')
        }
        return
      }
    }
  }

  /**
   * Writes the shuffled ranks of everyone pre-queued before the start (Redis said the start passed, so that
   * list is final). Deterministic: a second run, after a crash or in another process, writes the same ranks.
   */
  private async shuffle(coupon: Coupon, state: CouponState): Promise<void> {
    const { seed } = await fairnessSecrets(this.ctx.db, coupon.id)
    if (seed === null) throw new Error(`coupon ${coupon.id} has a shuffled pre-queue but no seed`)
    const order = shuffledOrder(seed, await state.prequeuedBeforeStart())
    if (order.length === 0) return state.rankPrequeue([], true)
    for (let from = 0; from < order.length; from += RANK_CHUNK) {
      const pairs = order.slice(from, from + RANK_CHUNK).flatMap((userId, i) => [userId, from + i + 1])
      await state.rankPrequeue(pairs, from + RANK_CHUNK >= order.length)
    }
  }
}
