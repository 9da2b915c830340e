import {
  type Coupon,
  type CouponStats,
  type Issuance,
  type IssueMode,
  windowRefusal,
} from '../../domain/coupon.ts'
import { issuedCount } from '../../storage/coupons.ts'
import type { IssuanceContext } from './context.ts'
import type { AdmissionReply, CouponCounters, CouponState, CouponStates } from './coupon-state.ts'
import { type ClosableMode, type IssuanceMode, type RequestOutcome, SOLD_OUT } from './mode.ts'
import { type PendingSource, StateLoader } from './rebuild.ts'
import { toIssuance } from './record.ts'
import { SoldOutMemo, type SoldOutMemoOptions, type SoldOutSource } from './sold-out-memo.ts'

/** What makes one Redis-first mode (stream, queue, kafka) different from the others. */
export interface RedisFirstSpec {
  mode: Extract<IssueMode, 'stream' | 'queue' | 'kafka'>
  /** The coupons' Redis state the mode admits on. */
  states: CouponStates
  /** The admission script: one round trip that admits, refuses, or finds the state lost. */
  admit(state: CouponState, userId: string): Promise<AdmissionReply>
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
): ClosableMode {
  const { states } = spec
  const loader = new StateLoader(ctx, states, spec.pending)

  async function request(coupon: Coupon, userId: string): Promise<RequestOutcome> {
    const state = states.of(coupon.id)
    let reply = await spec.admit(state, userId)
    if (reply.kind === 'notLoaded') {
      await loader.rebuild(coupon)
      reply = await spec.admit(state, userId)
    }
    switch (reply.kind) {
      case 'admitted':
        return admitted(coupon, userId, reply.requestedAtMs, {
          status: spec.admittedStatus,
          position: reply.position,
        })
      case 'alreadyRequested':
        return { kind: 'alreadyRequested', issuance: toIssuance(coupon.id, userId, reply.record) }
      case 'prequeued':
        return admitted(coupon, userId, reply.requestedAtMs, {
          status: 'WAITING',
          prequeuePlace: reply.place,
          startsAt: coupon.issueStartsAt.toISOString(),
        })
      case 'soldOut':
        return SOLD_OUT
      case 'notStarted':
      case 'ended':
      case 'paused':
        throw windowRefusal(coupon, reply.kind)
      case 'notLoaded':
        throw new Error(`coupon ${coupon.id} has no Redis state right after its rebuild`)
    }
  }

  const mode: IssuanceMode = {
    mode: spec.mode,
    recordsEveryRequest: true,
    prepare: (coupon) => loader.rebuild(coupon),
    request,
    status: (coupon, userId) => loader.recordedIssuance(coupon, userId),
    async stats(coupon) {
      const [counters, issued] = await Promise.all([
        states.of(coupon.id).readCounters(),
        issuedCount(ctx.db, coupon.id),
      ])
      return redisFirstStats(coupon, counters, issued, await spec.undecided(coupon, counters, issued))
    },
    remaining: (coupon) => loader.stockOf(coupon),
  }
  return new SoldOutMemo(soldOutSource(states), ctx.logger, memoOptions).wrap(mode)
}

/** A Redis-first coupon's stats from its Redis counters, its issued rows and its undecided requests. */
export function redisFirstStats(
  coupon: Coupon,
  counters: Omit<CouponCounters, 'issued'>,
  issued: number,
  pending: number,
): CouponStats {
  return {
    requested: counters.seq + counters.soldOut,
    accepted: counters.seq,
    pending,
    issued,
    soldOut: counters.soldOut + counters.resolvedSoldOut,
    remaining: counters.loaded ? counters.stock : coupon.quantity - issued,
  }
}

/** A 202: the request is admitted (to the mode's line, or to the pre-queue) at `requestedAtMs` on Redis's clock. */
function admitted(
  coupon: Coupon,
  userId: string,
  requestedAtMs: number,
  answer: Pick<Issuance, 'status'> & Partial<Pick<Issuance, 'position' | 'prequeuePlace' | 'startsAt'>>,
): RequestOutcome {
  return {
    kind: 'admitted',
    httpStatus: 202,
    issuance: { couponId: coupon.id, userId, ...answer, requestedAt: new Date(requestedAtMs).toISOString() },
  }
}

/** The sold-out memo's view of the coupons' Redis state. */
export function soldOutSource(states: CouponStates): SoldOutSource {
  return {
    holders: (couponId, limit) => states.of(couponId).requestHolders(limit),
    stock: (couponId) => states.of(couponId).stockIfLoaded(),
    addRefusals: async (couponId, refusals) => {
      await states.of(couponId).addSoldOut(refusals)
    },
  }
}
