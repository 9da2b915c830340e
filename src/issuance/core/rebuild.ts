import { setTimeout as sleep } from 'node:timers/promises'
import type { Coupon, Issuance } from '../../domain/coupon.ts'
import { unavailable } from '../../domain/errors.ts'
import { takeLease } from '../../redis/leases.ts'
import { isReleased } from '../../storage/retention.ts'
import { issuedSnapshot } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from './context.ts'
import type { CouponSchedule, CouponState, CouponStates } from './coupon-state.ts'
import { issuedRecord } from './decisions.ts'
import { type IssuanceRecord, toIssuance } from './record.ts'

/**
 * Requests a mode holds that are admitted but not rows yet (the stream's entries, the queue's waiting set),
 * with `reserveStock` true when each holds a unit of stock. Read before Postgres (see StateLoader.rebuild).
 */
export interface PendingRequests {
  records: [userId: string, record: IssuanceRecord][]
  reserveStock: boolean
}

/** How a mode supplies its pending requests to a rebuild. */
export type PendingSource = (coupon: Coupon) => Promise<PendingRequests>

/** For a mode whose requests are rows as soon as they are answered (sync). */
export const NOTHING_PENDING: PendingSource = async () => ({ records: [], reserveStock: false })

const REBUILD_LEASE_MS = 30_000

/**
 * The schedule Postgres holds for a coupon, as its Redis state keeps it: written by a rebuild, and by
 * CouponState.setSchedule after an admin's change (PATCH /admin/coupons/{id}).
 */
export function scheduleOf(
  coupon: Pick<Coupon, 'issueStartsAt' | 'issueEndsAt' | 'paused' | 'prequeueStartsAt' | 'prequeueOrder'>,
): CouponSchedule {
  return {
    opensAtMs: coupon.issueStartsAt.getTime(),
    closesAtMs: coupon.issueEndsAt.getTime(),
    paused: coupon.paused,
    ...(coupon.prequeueStartsAt === null
      ? {}
      : {
          prequeueOpensAtMs: coupon.prequeueStartsAt.getTime(),
          prequeueOrder: coupon.prequeueOrder ?? 'arrival',
        }),
  }
}

/**
 * The sale's Redis state was released to Postgres for good (plumbing/sale-release.ts): it is never rebuilt;
 * the caller answers from Postgres (a process whose cached coupon did not know yet gets this).
 */
export class SaleReleasedError extends Error {
  constructor(couponId: number) {
    super(`coupon ${couponId} was released from Redis`)
  }
}

/**
 * Loads a coupon's Redis state from Postgres, the source of truth for issued rows, plus one mode's pending
 * requests: for a new coupon, and whenever Redis lost the state. Reads that must not answer "never
 * requested" for an issued user (status, stock) rebuild first when the state is gone.
 */
export class StateLoader {
  private readonly ctx: IssuanceContext
  private readonly states: CouponStates
  private readonly pending: PendingSource

  constructor(ctx: IssuanceContext, states: CouponStates, pending: PendingSource) {
    this.ctx = ctx
    this.states = states
    this.pending = pending
  }

  /** Loads the coupon's state unless some process already did. */
  async ensureLoaded(coupon: Coupon): Promise<void> {
    if (!(await this.states.of(coupon.id).isLoaded())) await this.rebuild(coupon)
  }

  /**
   * (Re)creates the coupon's state. One process rebuilds at a time (a lease); the others wait for it.
   * Admissions meanwhile answer "not loaded" and retry, so nobody is admitted against a half-built state:
   * the records are merged first, the state hash comes last.
   */
  async rebuild(coupon: Coupon): Promise<void> {
    const state = this.states.of(coupon.id)
    const lease = await takeLease(this.ctx.redis, state.keys.rebuildLease, REBUILD_LEASE_MS)
    if (lease === undefined) return waitUntilLoaded(state)
    try {
      if (await state.isLoaded()) return
      // Under the lease the releaser holds from its copy to its delete: a sale marked released is seen
      // here, before anything (the stream's consumer group) is created again; one not marked yet is
      // released only once this rebuild is done.
      if (await isReleased(this.ctx.db, coupon.id)) throw new SaleReleasedError(coupon.id)
      // The pending requests are read before Postgres: e.g. a stream entry is deleted only after its row
      // committed, so an entry missing here has a row the read below sees (read the other way round, a batch
      // committed and deleted in between would be in neither, and its units would be given again).
      const held = await this.pending(coupon)
      const snapshot = await issuedSnapshot(this.ctx.db, coupon.id)
      const records = new Map<string, IssuanceRecord>()
      let seq = 0
      for (const row of snapshot.rows) {
        const record = issuedRecord(row)
        seq = Math.max(seq, record.position)
        records.set(row.userId, record)
      }
      let promised = snapshot.rows.length
      for (const [userId, record] of held.records) {
        seq = Math.max(seq, record.position)
        if (records.has(userId)) continue
        records.set(userId, record)
        if (held.reserveStock) promised += 1
      }
      // The row read under the lock, not the caller's copy: that may be a cached one an admin changed since.
      const current = { ...coupon, ...snapshot.steering }
      const stock = current.quantity - promised
      await state.restore(records, { stock, seq, issued: snapshot.rows.length }, scheduleOf(current))
      this.ctx.logger.info(
        { couponId: coupon.id, issued: snapshot.rows.length, promised, stock },
        'coupon state loaded into Redis',
      )
    } finally {
      await lease.release()
    }
  }

  /** The user's record; if Redis lost the coupon, rebuilt first so an issued user never reads NOT_REQUESTED. */
  async recordedIssuance(coupon: Coupon, userId: string): Promise<Issuance | undefined> {
    const state = this.states.of(coupon.id)
    let record = await state.readRecord(userId)
    if (record === undefined && !(await state.isLoaded())) {
      await this.rebuild(coupon)
      record = await state.readRecord(userId)
    }
    return record && toIssuance(coupon.id, userId, record)
  }

  /** The stock Redis still has to give (loading the state if Redis lost it). */
  async stockOf(coupon: Coupon): Promise<number> {
    const stock = await this.states.of(coupon.id).stockIfLoaded()
    if (stock !== undefined) return stock
    await this.rebuild(coupon)
    return this.stockOf(coupon)
  }
}

async function waitUntilLoaded(state: CouponState): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await state.isLoaded()) return
    await sleep(50)
  }
  throw unavailable('coupon state')
}
