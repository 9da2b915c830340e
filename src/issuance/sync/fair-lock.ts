import { randomUUID } from 'node:crypto'
import { AppError } from '../../domain/errors.ts'
import { duplicateRedis, type RedisClient } from '../../redis/client.ts'
import { channels } from '../../redis/keys.ts'
import { defineScript, replyInteger, replyList } from '../../redis/scripts.ts'
import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'

type LockContext = Pick<IssuanceContext, 'redis' | 'redisPrefix' | 'logger'>

const fairLockAcquire = defineScript('fairLockAcquire', (reply) => {
  const name = 'fairLockAcquire'
  const held = replyInteger(name, reply, 0) === 1
  const arrival = replyInteger(name, reply, 1)
  // `rank` comes only while waiting; 0 means next in line.
  return { held, arrival, rank: replyList(name, reply).length > 2 ? replyInteger(name, reply, 2) : 0 }
})
const fairLockRelease = defineScript(
  'fairLockRelease',
  (reply) => replyInteger('fairLockRelease', reply, 0) === 1,
)

/** Waits for one acquisition's "your turn" notice, or a timeout, whichever comes first. */
export interface LockWatch {
  /** Resolves on a notice (also one that came since the last wait) or after `ms`. */
  wait(ms: number): Promise<void>
  stop(): void
}

/**
 * The one pub/sub subscriber of a process for fair-lock notices. A release publishes the token of the next
 * waiter in line; only that waiter wakes, so a long line is not woken on every release. The connection is
 * opened on first use, and a lost notice only costs the waiter its poll interval.
 */
export class LockReleaseNotifier {
  private readonly ctx: LockContext
  private readonly channel: string
  private readonly wakers = new Map<string, () => void>()
  private subscriber: RedisClient | undefined
  private closed = false

  constructor(ctx: LockContext) {
    this.ctx = ctx
    this.channel = channels(ctx.redisPrefix).lockReleased
  }

  watch(token: string): LockWatch {
    this.subscribe()
    let noticed = false
    let wake: (() => void) | undefined
    this.wakers.set(token, () => {
      noticed = true
      wake?.()
    })
    return {
      wait: (ms) => {
        if (noticed) {
          noticed = false
          return Promise.resolve()
        }
        return new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer)
            wake = undefined
            noticed = false
            resolve()
          }
          const timer = setTimeout(done, ms)
          wake = done
        })
      },
      stop: () => {
        this.wakers.delete(token)
      },
    }
  }

  async close(): Promise<void> {
    this.closed = true
    this.subscriber?.disconnect()
    this.subscriber = undefined
    // Waiters still in line fall back to polling.
    for (const wake of this.wakers.values()) wake()
  }

  private subscribe(): void {
    if (this.closed || this.subscriber !== undefined) return
    const subscriber = duplicateRedis(this.ctx.redis, 'coupon-rush-lock-notices')
    this.subscriber = subscriber
    subscriber.on('message', (_channel: string, token: string) => this.wakers.get(token)?.())
    subscriber.on('error', (error: unknown) =>
      this.ctx.logger.debug({ err: error }, 'lock notice subscriber error'),
    )
    // Also after a failed first connect: the client keeps reconnecting and subscribes once it is ready.
    subscriber.on('ready', () => {
      subscriber.subscribe(this.channel).catch((error: unknown) => {
        this.ctx.logger.warn({ err: error }, 'subscribing to lock notices failed; waiters poll')
      })
    })
    subscriber.connect().catch((error: unknown) => {
      this.ctx.logger.warn({ err: error }, 'lock notice subscriber cannot connect yet; waiters poll')
    })
  }
}

export interface FairLockOptions {
  /** A holder that dies blocks the coupon for at most this long. */
  leaseMs: number
  /** Waiting longer than this gives up with 503 UNAVAILABLE instead of hanging. */
  maxWaitMs?: number
  /** How often the next in line re-checks without a notice (a dead holder sends none). */
  pollMs?: number
  /** The slowest re-check, for waiters far back (they only keep their place). */
  maxPollMs?: number
  /** A waiter silent this long is dropped from the line; well above maxPollMs. */
  waiterTtlMs?: number
}

// A dead waiter blocks the line for at most waiterTtlMs (Redisson's default threadWaitTime is 5 s too); a live
// one dropped after a long pause rejoins at its arrival place, so the margin over maxPollMs need not be huge.
const DEFAULTS = { maxWaitMs: 10_000, pollMs: 25, maxPollMs: 1_000, waiterTtlMs: 5_000 }

/** A held lock: `arrival` is the 1-based arrival number of this acquisition on the coupon's line. */
export interface FairLockGrant {
  couponId: number
  token: string
  arrival: number
}

/**
 * A fair (FIFO) lock per coupon in Redis, after Redisson's RedissonFairLock: a line of waiters ordered by
 * arrival number, a deadline per waiter so a dead waiter cannot block the line, and a leased holder key so a
 * dead holder cannot either. See fairLockAcquire-4.lua and fairLockRelease-3.lua.
 */
export class FairLock {
  private readonly ctx: LockContext
  private readonly notifier: LockReleaseNotifier
  private readonly options: Required<FairLockOptions>
  private readonly channel: string
  private readonly states: CouponStates

  constructor(ctx: LockContext, notifier: LockReleaseNotifier, options: FairLockOptions) {
    this.ctx = ctx
    this.notifier = notifier
    this.options = { ...DEFAULTS, ...options }
    this.states = new CouponStates(ctx)
    this.channel = this.states.channels.lockReleased
    if (this.options.waiterTtlMs <= 2 * this.options.maxPollMs) {
      throw new Error('waiterTtlMs must be well above maxPollMs, or live waiters are dropped')
    }
  }

  /** Waits in line until the lock is held; throws AppError UNAVAILABLE after maxWaitMs. */
  async acquire(couponId: number): Promise<FairLockGrant> {
    const { keys } = this.states.of(couponId)
    const { leaseMs, maxWaitMs, pollMs, maxPollMs, waiterTtlMs } = this.options
    const token = randomUUID()
    const watch = this.notifier.watch(token)
    const giveUpAt = Date.now() + maxWaitMs
    let arrival = 0
    try {
      for (;;) {
        const reply = await fairLockAcquire.run(
          this.ctx.redis,
          [keys.lock, keys.lockWaiters, keys.lockDeadlines, keys.lockArrivals],
          [token, arrival, leaseMs, waiterTtlMs, this.channel],
        )
        arrival = reply.arrival
        if (reply.held) return { couponId, token, arrival }
        const left = giveUpAt - Date.now()
        if (left <= 0) {
          throw new AppError('UNAVAILABLE', 'too many requests wait for this coupon, try again shortly', {
            retryAfterSeconds: 1,
          })
        }
        // The next in line checks often (a dead holder sends no notice); those far back only keep their place.
        await watch.wait(Math.min(left, pollMs * (1 + reply.rank), maxPollMs))
      }
    } catch (error) {
      // Leave the line (and free the lock if a grant's reply was lost), so nobody waits behind us.
      await this.releaseToken(couponId, token).catch((releaseError: unknown) => {
        // Our place in line then lapses after waiterTtlMs (a held lock after its lease).
        this.ctx.logger.debug({ err: releaseError, couponId }, 'leaving the fair-lock line failed')
      })
      throw error
    } finally {
      watch.stop()
    }
  }

  /** Releases the lock if still held by this grant; false if the lease ran out (another may hold it now). */
  async release(grant: FairLockGrant): Promise<boolean> {
    return this.releaseToken(grant.couponId, grant.token)
  }

  /** Runs `work` holding the coupon's lock, releasing it however `work` ends. */
  async withLock<T>(couponId: number, work: (grant: FairLockGrant) => Promise<T>): Promise<T> {
    const grant = await this.acquire(couponId)
    try {
      return await work(grant)
    } finally {
      try {
        if (!(await this.release(grant))) {
          this.ctx.logger.warn(
            { couponId, leaseMs: this.options.leaseMs },
            'fair lock lease ran out before release',
          )
        }
      } catch (error) {
        // The lease frees it in the end.
        this.ctx.logger.warn({ err: error, couponId }, 'releasing the fair lock failed')
      }
    }
  }

  private async releaseToken(couponId: number, token: string): Promise<boolean> {
    const { keys } = this.states.of(couponId)
    return fairLockRelease.run(
      this.ctx.redis,
      [keys.lock, keys.lockWaiters, keys.lockDeadlines],
      [token, this.channel],
    )
  }
}
