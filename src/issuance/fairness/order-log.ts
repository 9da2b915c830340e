import type { Coupon } from '../../domain/coupon.ts'
import { AppError } from '../../domain/errors.ts'
import { redisNowMs } from '../../redis/client.ts'
import { fairnessSecrets } from '../../storage/coupons.ts'
import { type OrderLogEntry, readOrderLog, writeOrderLog } from '../../storage/order-log.ts'
import { issuedSnapshot } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'
import type { IssuanceMode } from '../core/mode.ts'
import { saltedUserHash, shuffleKey } from './shuffle.ts'

/** GET /coupons/{id}/order-log: the log and what is needed to check it. */
export interface PublicOrderLog {
  couponId: number
  /** hex; each user is hex SHA-256(salt || userId). */
  salt: string
  prequeueOrder: 'arrival' | 'shuffle' | null
  /** hex shuffle seed (shuffle only). */
  seed: string | null
  entries: OrderLogEntry[]
}

/**
 * The public order log of a coupon, once its sale is over (nothing undecided, and the window closed or the
 * stock gone, on Redis's clock): every position with the salted user and the outcome, plus the pre-queued
 * users' places. Built once from the Postgres rows (ISSUED) and the Redis records (SOLD_OUT), then stored.
 */
export class OrderLogs {
  private readonly ctx: IssuanceContext
  private readonly states: CouponStates

  constructor(ctx: IssuanceContext) {
    this.ctx = ctx
    this.states = new CouponStates(ctx)
  }

  async of(coupon: Coupon, mode: IssuanceMode): Promise<PublicOrderLog> {
    const { salt, seed } = await fairnessSecrets(this.ctx.db, coupon.id)
    if (salt === null) throw new AppError('NOT_FOUND', `coupon ${coupon.id} has no order log`)
    let entries = await readOrderLog(this.ctx.db, coupon.id)
    if (entries.length === 0) {
      await this.assertOver(coupon, mode)
      await writeOrderLog(this.ctx.db, coupon.id, await this.build(coupon, salt, seed))
      entries = await readOrderLog(this.ctx.db, coupon.id)
    }
    return {
      couponId: coupon.id,
      salt: salt.toString('hex'),
      prequeueOrder: coupon.prequeueOrder,
      seed: coupon.prequeueOrder === 'shuffle' && seed !== null ? seed.toString('hex') : null,
      entries,
    }
  }

  /**
   * Writes the coupon's order log now unless it was written: the sale releaser calls this before it frees the
   * Redis records the log is built from (the sale is over and every request decided by then).
   */
  async ensureWritten(coupon: Coupon): Promise<void> {
    const { salt, seed } = await fairnessSecrets(this.ctx.db, coupon.id)
    if (salt === null || (await readOrderLog(this.ctx.db, coupon.id)).length > 0) return
    await writeOrderLog(this.ctx.db, coupon.id, await this.build(coupon, salt, seed))
  }

  private async assertOver(coupon: Coupon, mode: IssuanceMode): Promise<void> {
    const [stats, nowMs, prequeued] = await Promise.all([
      mode.stats(coupon),
      redisNowMs(this.ctx.redis),
      this.states.of(coupon.id).prequeueLength(),
    ])
    const closed = nowMs >= coupon.issueEndsAt.getTime()
    if (stats.pending > 0 || prequeued > 0 || !(closed || stats.remaining <= 0)) {
      throw new AppError('SALE_NOT_OVER', 'the order log is published once the sale is over')
    }
  }

  private async build(coupon: Coupon, salt: Buffer, seed: Buffer | null): Promise<OrderLogEntry[]> {
    const state = this.states.of(coupon.id)
    const [snapshot, places] = await Promise.all([
      issuedSnapshot(this.ctx.db, coupon.id),
      state.prequeuePlaces(),
    ])
    const startMs = coupon.issueStartsAt.getTime()
    // Those who joined after the start (while the pre-queue was moved) keep their place but were not shuffled.
    const entry = (
      userId: string,
      position: number | null,
      outcome: OrderLogEntry['outcome'],
      requestedAtMs: number,
    ) => {
      const place = places.get(userId)
      const shuffled = place !== undefined && requestedAtMs < startMs && coupon.prequeueOrder === 'shuffle'
      return {
        userHash: saltedUserHash(salt, userId),
        position,
        outcome,
        prequeuePlace: place ?? null,
        shuffleKey: shuffled && seed !== null ? shuffleKey(seed, userId) : null,
      }
    }
    const entries = new Map<string, OrderLogEntry>()
    for (const row of snapshot.rows)
      entries.set(row.userId, entry(row.userId, row.position ?? null, 'ISSUED', row.requestedAt.getTime()))
    await state.scanRecords((userId, record) => {
      if (record.status !== 'SOLD_OUT' || entries.has(userId)) return
      if (record.position > 0 || places.has(userId)) {
        const position = record.position > 0 ? record.position : null
        entries.set(userId, entry(userId, position, 'SOLD_OUT', record.requestedAtMs))
      }
    })
    return [...entries.values()]
  }
}
