import { setTimeout as sleep } from 'node:timers/promises'
import { isDeepStrictEqual } from 'node:util'
import { takeLease } from '../../redis/leases.ts'
import { findCoupon } from '../../storage/coupons.ts'
import {
  markRedisFreed,
  markReleased,
  releaseCandidates,
  type StoredOutcome,
  saveOutcomes,
} from '../../storage/retention.ts'
import { holderRows } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { type CouponState, CouponStates } from '../core/coupon-state.ts'
import { issuanceOfRow } from '../core/decisions.ts'
import type { IssuanceWorker } from '../core/mode.ts'
import { type IssuanceRecord, toIssuance } from '../core/record.ts'
import { OrderLogs } from '../fairness/order-log.ts'

export interface SaleReleaseOptions {
  /** SALE_RELEASE_AFTER_MS: how long after its end a drained sale keeps its Redis state. */
  afterMs: number
  /** How often the sales due for release are looked for. */
  sweepMs: number
  /** Users copied per page (HSCAN hint and one INSERT): small pages keep every call short. */
  pageSize: number
  /** The release's lease on the coupon, renewed on every page: a releaser that died gives it up this late. */
  leaseMs: number
  /**
   * How long the release waits between announcing it and deleting the keys: every process drops its
   * cached coupon meanwhile, so its reads go to Postgres before the keys are gone.
   */
  announceMs: number
}

/** What a release of one sale came to. */
export type ReleaseResult = 'released' | 'waiting' | 'busy'

/** The sweep period for a release delay: a sale is released at most a quarter of the delay late (1 s - 1 min). */
export function releaseSweepMs(afterMs: number): number {
  return Math.min(Math.max(Math.floor(afterMs / 4), 1_000), 60_000)
}

/**
 * Releases the Redis state of sales that ended more than `afterMs` ago and whose every accepted request is
 * decided and in Postgres (issue 18). Per sale, under the coupon's rebuild lease (so no rebuild runs
 * meanwhile, and two releasers never overlap): copies what only Redis knows to Postgres (the records no row
 * tells, e.g. queue's SOLD_OUT), marks the sale released with its final counters, tells every process
 * (they drop the cached coupon and answer from Postgres from then on), and only then deletes its keys. Each
 * step can be repeated: a crash anywhere leaves a sale the next sweep finishes; a sale with a backlog waits.
 */
export class SaleReleaser implements IssuanceWorker {
  readonly name = 'sale-release'
  private readonly ctx: IssuanceContext
  private readonly options: SaleReleaseOptions
  private readonly states: CouponStates
  private readonly orderLogs: OrderLogs
  private running = false
  private loop: Promise<void> | undefined
  private wake: () => void = () => {}

  constructor(ctx: IssuanceContext, options: Partial<SaleReleaseOptions> & { afterMs: number }) {
    this.ctx = ctx
    this.options = {
      sweepMs: releaseSweepMs(options.afterMs),
      pageSize: 1_000,
      leaseMs: 30_000,
      announceMs: 1_000,
      ...options,
    }
    this.states = new CouponStates(ctx)
    this.orderLogs = new OrderLogs(ctx)
  }

  async start(): Promise<void> {
    if (this.running) return
    this.running = true
    this.loop = this.sweepLoop()
  }

  async stop(): Promise<void> {
    this.running = false
    this.wake()
    await this.loop
  }

  /** Releases every sale due now; returns how many were released. */
  async releaseDue(): Promise<number> {
    let released = 0
    for (const candidate of await releaseCandidates(this.ctx.db, this.options.afterMs)) {
      if (!this.running && this.loop !== undefined) break
      const result = await this.release(candidate.couponId, candidate.released)
      if (result === 'released') released += 1
    }
    return released
  }

  /** Releases one sale (`marked`: its copy and mark are done already, only its keys remain). */
  async release(couponId: number, marked = false): Promise<ReleaseResult> {
    const state = this.states.of(couponId)
    const { leaseMs } = this.options
    const lease = await takeLease(this.ctx.redis, state.keys.rebuildLease, leaseMs)
    if (lease === undefined) return 'busy'
    try {
      if (!marked) {
        if ((await state.backlog()) > 0) return 'waiting'
        const copied = await this.copyOutcomes(state, () => lease.renew(leaseMs))
        if (!copied) return 'waiting'
        // The public order log is built from the records about to be freed: written first (issue 19).
        const coupon = await findCoupon(this.ctx.db, couponId)
        if (coupon !== undefined) await this.orderLogs.ensureWritten(coupon)
        await markReleased(this.ctx.db, couponId, await state.readCounters())
      }
      await this.ctx.redis.publish(state.channels.couponChanged, String(couponId))
      if (this.options.announceMs > 0) await sleep(this.options.announceMs)
      await state.deleteAll()
      await markRedisFreed(this.ctx.db, couponId)
      this.ctx.logger.info({ couponId }, 'ended sale released from Redis')
      return 'released'
    } finally {
      await lease.release().catch(() => {})
    }
  }

  /**
   * Copies, page by page, every record no row tells as it is; false (nothing marked) as soon as one request
   * is still undecided, or the lease was lost (another releaser may have it now).
   */
  private async copyOutcomes(state: CouponState, renew: () => Promise<boolean>): Promise<boolean> {
    let complete = true
    await state.scanRecordPages(this.options.pageSize, async (page) => {
      if (page.some(([, record]) => record.status === 'ACCEPTED' || record.status === 'PENDING')) {
        complete = false
      } else {
        await saveOutcomes(this.ctx.db, state.couponId, await this.untoldByRows(state.couponId, page))
        complete = await renew()
      }
      return complete
    })
    return complete
  }

  /** The page's records that the users' rows do not answer exactly (ISSUED ones mostly do). */
  private async untoldByRows(couponId: number, page: [string, IssuanceRecord][]): Promise<StoredOutcome[]> {
    const issued = page.filter(([, record]) => record.status === 'ISSUED').map(([userId]) => userId)
    const rows = issued.length === 0 ? [] : await holderRows(this.ctx.db, couponId, issued)
    const rowOf = new Map(rows.map((row) => [row.userId, row]))
    const untold: StoredOutcome[] = []
    for (const [userId, record] of page) {
      const row = rowOf.get(userId)
      const told =
        row !== undefined &&
        isDeepStrictEqual(issuanceOfRow(couponId, userId, row), toIssuance(couponId, userId, record))
      if (!told) untold.push({ userId, ...record })
    }
    return untold
  }

  private async sweepLoop(): Promise<void> {
    while (this.running) {
      try {
        await this.releaseDue()
      } catch (error) {
        this.ctx.logger.warn({ err: error }, 'sale-release: releasing ended sales failed')
      }
      await new Promise<void>((resolve) => {
        // stop() during the sweep woke the wait before this one: without this check it sleeps a whole period.
        if (!this.running) return resolve()
        const timer = setTimeout(resolve, this.options.sweepMs)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }
}
