import type { Coupon, IssueMode } from '../domain/coupon.ts'
import { issuedCount } from '../storage/coupons.ts'
import type { IssuanceContext } from './context.ts'
import {
  type AdmissionReply,
  addSoldOut,
  type CouponCounters,
  type PendingSource,
  readCounters,
  rebuildCouponState,
  recordedIssuance,
  requestHolders,
  stockIfLoaded,
  stockOf,
  toIssuance,
} from './coupon-store.ts'
import { type IssuanceMode, type RequestOutcome, SOLD_OUT } from './mode.ts'
import { SoldOutMemo, type SoldOutMemoOptions, type SoldOutSource } from './sold-out-memo.ts'

/** What makes one Redis-first mode (stream, queue, kafka) different from the others. */
export interface RedisFirstSpec {
  mode: Extract<IssueMode, 'stream' | 'queue' | 'kafka'>
  /** The admission script: one round trip that admits, refuses, or finds the state lost. */
  admit(ctx: IssuanceContext, couponId: number, userId: string): Promise<AdmissionReply>
  /** The status an admitted request has: ACCEPTED (a unit reserved for it) or PENDING (waits in line). */
  admittedStatus: 'ACCEPTED' | 'PENDING'
  /** The mode's requests that are admitted but not rows yet, for a rebuild. */
  pending: PendingSource
  /** Admitted requests not decided yet. */
  undecided(coupon: Coupon, counters: CouponCounters, issued: number): Promise<number> | number
}

/**
 * A Redis-first mode: admission is one Lua script on the coupon's Redis state, answered at once; the
 * decision travels on (stream, Kafka, queue) and is written to Postgres later. Redis lost the coupon?
 * Rebuilt from Postgres plus the mode's pending requests, then tried once more. A sell-out is final (the
 * stock never comes back), so the mode comes with the sold-out memo in front.
 */
export function redisFirstMode(
  ctx: IssuanceContext,
  spec: RedisFirstSpec,
  memoOptions: Partial<SoldOutMemoOptions> = {},
): IssuanceMode & { close(): Promise<void> } {
  const rebuild = (coupon: Coupon) => rebuildCouponState(ctx, coupon, spec.pending)

  async function request(coupon: Coupon, userId: string): Promise<RequestOutcome> {
    let reply = await spec.admit(ctx, coupon.id, userId)
    if (reply.kind === 'notLoaded') {
      await rebuild(coupon)
      reply = await spec.admit(ctx, coupon.id, userId)
    }
    switch (reply.kind) {
      case 'admitted':
        return {
          kind: 'admitted',
          httpStatus: 202,
          issuance: {
            couponId: coupon.id,
            userId,
            status: spec.admittedStatus,
            position: reply.position,
            requestedAt: new Date(reply.requestedAtMs).toISOString(),
          },
        }
      case 'alreadyRequested':
        return { kind: 'alreadyRequested', issuance: toIssuance(coupon.id, userId, reply.record) }
      case 'soldOut':
        return SOLD_OUT
      case 'notLoaded':
        throw new Error(`coupon ${coupon.id} has no Redis state right after its rebuild`)
    }
  }

  const mode: IssuanceMode = {
    mode: spec.mode,
    recordsEveryRequest: true,
    prepare: rebuild,
    request,
    status: (coupon, userId) => recordedIssuance(ctx, coupon, userId, spec.pending),
    async stats(coupon) {
      const [counters, issued] = await Promise.all([
        readCounters(ctx, coupon.id),
        issuedCount(ctx.db, coupon.id),
      ])
      return {
        requested: counters.seq + counters.soldOut,
        accepted: counters.seq,
        pending: await spec.undecided(coupon, counters, issued),
        issued,
        soldOut: counters.soldOut + counters.resolvedSoldOut,
        remaining: counters.loaded ? counters.stock : coupon.quantity - issued,
      }
    },
    remaining: (coupon) => stockOf(ctx, coupon, spec.pending),
  }
  return new SoldOutMemo(soldOutSource(ctx), ctx.logger, memoOptions).wrap(mode)
}

/** The sold-out memo's view of the coupon store. */
export function soldOutSource(ctx: IssuanceContext): SoldOutSource {
  return {
    holders: (couponId, limit) => requestHolders(ctx, couponId, limit),
    stock: (couponId) => stockIfLoaded(ctx, couponId),
    addRefusals: async (couponId, refusals) => {
      await addSoldOut(ctx, couponId, refusals)
    },
  }
}
