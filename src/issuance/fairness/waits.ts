import type { Coupon, Issuance } from '../../domain/coupon.ts'
import { redisNowMs } from '../../redis/client.ts'
import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'

/** What a status read adds for an undecided request: how many are ahead, the wait, when to poll again. */
export type Wait = Pick<Issuance, 'ahead' | 'estimatedWaitMs' | 'pollAfterMs'>

const MIN_POLL_MS = 250
const MAX_POLL_MS = 30_000
const POLL_MS_PER_AHEAD = 2

/** The front polls often (or follows the event stream), the back rarely: grows with the distance. */
export function pollAfterMs(ahead: number): number {
  return Math.min(MAX_POLL_MS, MIN_POLL_MS + ahead * POLL_MS_PER_AHEAD)
}

/**
 * The wait of an undecided request. WAITING: its rank in the pre-queue (arrival, or shuffled once the start
 * passed) plus the time to the start; PENDING (queue): its rank on the waiting queue; ACCEPTED (stream, kafka):
 * the admitted without a row yet at smaller positions, estimated as position - 1 - issued. The estimate
 * divides by the drain rate measured since the start (issued per ms), when there is one.
 */
export class Waits {
  private readonly states: CouponStates

  constructor(ctx: IssuanceContext) {
    this.states = new CouponStates(ctx)
  }

  async of(coupon: Coupon, issuance: Issuance): Promise<Wait> {
    if (issuance.status === 'ISSUED' || issuance.status === 'SOLD_OUT') return {}
    const state = this.states.of(coupon.id)
    const [counters, nowMs] = await Promise.all([state.readCounters(), redisNowMs(state.redis)])
    const startMs = coupon.issueStartsAt.getTime()
    const rate = nowMs > startMs && counters.issued > 0 ? counters.issued / (nowMs - startMs) : undefined
    const drainMs = (ahead: number) => (rate === undefined ? undefined : Math.round(ahead / rate))
    let ahead: number
    let estimate: number | undefined
    if (issuance.status === 'WAITING') {
      ahead = (await state.prequeueAhead(issuance.userId)) ?? 0
      const toStart = Math.max(startMs - nowMs, 0)
      estimate = toStart + (drainMs(ahead) ?? 0)
    } else if (issuance.status === 'PENDING') {
      ahead = (await state.redis.zrank(state.keys.queue, issuance.userId)) ?? 0
      estimate = drainMs(ahead)
    } else {
      ahead = Math.max((issuance.position ?? 1) - 1 - counters.issued, 0)
    }
    return {
      ahead,
      ...(estimate === undefined ? {} : { estimatedWaitMs: estimate }),
      pollAfterMs: pollAfterMs(ahead),
    }
  }
}
