import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { RateLimit } from '../config/config.ts'
import { AppError } from '../domain/errors.ts'
import type { RedisClient } from '../redis/client.ts'

/**
 * Share of a limit each process lets through for a key before it asks Redis (the local pre-count). A tenth:
 * with the default 20 issuance requests per user that is two, so a person's double press, the repeat a
 * flash-sale crowd makes most, costs no Redis call (at 5%, one: every second press paid a Redis round trip
 * and, in a sold-out sale, the full route instead of the sold-out door).
 */
const LOCAL_SHARE = 0.1

export interface LocalCount {
  count: number
  /** End of this key's window as this process knows it (Redis's, once Redis was asked). */
  until: number
}

/**
 * A fixed-window limit per key, counted in Redis (one Lua call: INCRBY with expiry) so every process shares
 * it, with three ways of sparing Redis:
 * - a local pre-count: the first 10% of the limit (rounded down) of a key's window pass without a Redis call,
 *   and are added to the shared count by the key's next request. Someone asking once or a few times (most of
 *   a sale) costs no Redis call; a key flooding several processes may get past the limit by at most that
 *   share per process beyond the first, and by nothing with one process or a limit under 10;
 * - a key over its limit is refused from memory until its window ends (`inMemoryBlockOnConsumed`);
 * - while Redis is away the limit is counted in this process's memory (`insuranceLimiter`), not dropped.
 * The window is whole seconds (Redis EXPIRE), rounded up.
 */
export class SharedLimit {
  private readonly limiter: RateLimiterRedis
  private readonly local = new Map<string, LocalCount>()
  private readonly localHits: number
  private readonly windowMs: number
  private readonly detail: string
  private readonly onRefused: () => void
  private readonly sweeper: NodeJS.Timeout

  constructor(redis: RedisClient, keyPrefix: string, { max, windowMs }: RateLimit, onRefused: () => void) {
    const duration = Math.ceil(windowMs / 1000)
    this.limiter = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix,
      points: max,
      duration,
      inMemoryBlockOnConsumed: max + 1,
      insuranceLimiter: new RateLimiterMemory({ keyPrefix, points: max, duration }),
    })
    this.localHits = Math.floor(max * LOCAL_SHARE)
    this.windowMs = duration * 1000
    this.detail = `at most ${max} requests per ${duration} s`
    this.onRefused = onRefused
    this.sweeper = setInterval(() => this.sweep(), this.windowMs).unref()
  }

  /** Counts one request for `key`; rejects with 429 RATE_LIMITED (and Retry-After) beyond the limit. */
  consume(key: string): Promise<void> | undefined {
    const entry = this.window(key, Date.now())
    if (entry.count === 0) this.local.set(key, entry)
    entry.count++
    if (entry.count <= this.localHits) return undefined
    // The key's first call to Redis in the window carries the requests let through locally so far.
    return this.consumeShared(key, entry.count === this.localHits + 1 ? entry.count : 1, entry)
  }

  /**
   * The key's count when its next request would be counted in memory (no Redis call, no refusal), else
   * undefined. Nothing is counted until `countLocally`: a caller (http/sold-out-door.ts) checks every
   * condition first.
   */
  localCount(key: string, now = Date.now()): LocalCount | undefined {
    const entry = this.window(key, now)
    return entry.count < this.localHits ? entry : undefined
  }

  /** Counts one request for `key` in the count `localCount` just gave. */
  countLocally(key: string, entry: LocalCount): void {
    if (entry.count === 0) this.local.set(key, entry)
    entry.count++
  }

  close(): void {
    clearInterval(this.sweeper)
  }

  private async consumeShared(key: string, points: number, entry: LocalCount): Promise<void> {
    try {
      const counted = await this.limiter.consume(key, points)
      entry.until = Date.now() + counted.msBeforeNext
    } catch (refusal) {
      // Anything but a refusal (the insurance limiter failing too) lets the request through.
      if (!(refusal instanceof RateLimiterRes)) return
      entry.until = Math.max(entry.until, Date.now() + refusal.msBeforeNext)
      this.onRefused()
      throw new AppError('RATE_LIMITED', this.detail, { retryAfterSeconds: refusal.msBeforeNext / 1000 })
    }
  }

  /** The key's count in its current window: a new one (count 0, not kept yet) once the last has ended. */
  private window(key: string, now: number): LocalCount {
    const entry = this.local.get(key)
    return entry === undefined || entry.until <= now ? { count: 0, until: now + this.windowMs } : entry
  }

  /** Drops the counts of windows that have ended, so a crowd of distinct keys does not stay in memory. */
  private sweep(): void {
    const now = Date.now()
    for (const [key, entry] of this.local) if (entry.until <= now) this.local.delete(key)
  }
}
