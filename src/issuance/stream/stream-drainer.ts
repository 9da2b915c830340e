import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Coupon, IssueMode } from '../../domain/coupon.ts'
import { isInfrastructureError } from '../../domain/errors.ts'
import { connectRedis, duplicateRedis } from '../../redis/client.ts'
import { channels, couponKeys } from '../../redis/keys.ts'
import { listActiveCoupons } from '../../storage/coupons.ts'
import type { IssuanceContext } from '../context.ts'
import { ensureLoaded, type PendingSource, readReplicated } from '../coupon-store.ts'
import type { IssuanceWorker } from '../mode.ts'
import { retry } from '../retry.ts'
import {
  autoclaimEntries,
  deliveryCounts,
  ensureGroup,
  readGroupEntries,
  type StreamEntry,
  streamPending,
} from './stream-entries.ts'

export interface DrainOptions {
  /** Entries read per batch (the batch is whatever arrived, up to this many). */
  batchSize: number
  /** How long one read waits for the first entry. */
  blockMs: number
  /** An entry pending this long on a consumer is taken over (longer than the slowest batch). */
  reclaimIdleMs: number
  /** An entry delivered this many times without success goes to the dead-letter stream. */
  maxDeliveries: number
  /** How often the list of coupons to drain is refreshed from Postgres. */
  refreshMs: number
  /**
   * Drain loops per coupon in this process. Their transactions queue on the coupon's row lock, but while
   * one writes Postgres another reads the stream and acknowledges, so the stages overlap.
   */
  loopsPerCoupon: number
  /**
   * Delete entries when acknowledging (default). The Kafka relay keeps them until its writers have them in
   * Postgres, so a rebuild after a Redis loss still counts requests that are in Kafka but not yet rows.
   */
  deleteOnAck: boolean
}

export const DEFAULT_DRAIN_OPTIONS: DrainOptions = {
  batchSize: 2_000,
  blockMs: 20,
  reclaimIdleMs: 30_000,
  maxDeliveries: 5,
  refreshMs: 1_000,
  loopsPerCoupon: 3,
  deleteOnAck: true,
}

// Drain coupons whose sale opens within a minute, so the first request of a sale finds its writer waiting,
// and keep draining for an hour after it closes (a backlog left by an outage).
const ACTIVE_LOOKAHEAD_MS = 60_000
const ACTIVE_GRACE_MS = 3_600_000

/** Hands a batch of one coupon's entries to its sink (Postgres, or Kafka). Resolves once they are durable. */
export type BatchSink = (coupon: Coupon, entries: StreamEntry[]) => Promise<void>

/**
 * Drains the streams of every active coupon of one mode through a consumer group: reads in batches, hands
 * each batch to the sink, and only after the sink made it durable acknowledges and deletes the entries
 * (unacknowledged entries are never trimmed). Pending entries of a dead or stalled consumer are reclaimed
 * with XAUTOCLAIM; an entry that keeps failing goes to the coupon's dead-letter stream with its error.
 */
export class StreamDrainer implements IssuanceWorker {
  readonly name: string
  readonly consumer = `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  private readonly loops = new Map<number, Promise<void>>()
  /** Coupons listed active at the last refresh: a loop whose coupon left the list ends. */
  private active = new Set<number>()
  private readonly lastErrors = new Map<string, string>()
  private running = false
  /** Aborted by stop(): a batch retried in place is left pending for the next drainer. */
  private stopping = new AbortController()
  private refresher: Promise<void> | undefined

  private readonly ctx: IssuanceContext
  private readonly mode: Extract<IssueMode, 'stream' | 'kafka'>
  private readonly group: string
  private readonly sink: BatchSink
  private readonly options: DrainOptions
  private readonly pending: PendingSource

  constructor(
    ctx: IssuanceContext,
    mode: Extract<IssueMode, 'stream' | 'kafka'>,
    group: string,
    sink: BatchSink,
    options: Partial<DrainOptions> = {},
  ) {
    this.ctx = ctx
    this.mode = mode
    this.group = group
    this.sink = sink
    this.options = { ...DEFAULT_DRAIN_OPTIONS, ...options }
    this.name = `${mode}-drainer`
    this.pending = streamPending(ctx, group)
  }

  async start(): Promise<void> {
    this.running = true
    this.stopping = new AbortController()
    this.refresher = this.refreshLoop()
  }

  async stop(): Promise<void> {
    this.running = false
    this.stopping.abort()
    this.wake()
    await this.refresher
    await Promise.allSettled(this.loops.values())
  }

  /** Refreshes now instead of at the next tick (a coupon was just created). */
  private wake: () => void = () => {}

  private async refreshLoop(): Promise<void> {
    const subscriber = duplicateRedis(this.ctx.redis, `${this.consumer}-sub`)
    // A lost subscriber only delays a new coupon's drain to the next refresh (refreshMs).
    subscriber.on('error', () => {})
    subscriber.on('message', () => this.wake())
    await connectRedis(subscriber)
      .then(() => subscriber.subscribe(channels(this.ctx.redisPrefix).couponChanged))
      .catch((error: unknown) =>
        this.ctx.logger.warn({ err: error }, `${this.name}: no coupon notifications`),
      )
    try {
      await this.refreshUntilStopped()
    } finally {
      subscriber.disconnect()
    }
  }

  /** Starts the drain loops of each active coupon; also notices coupons whose Redis state was lost. */
  private async refreshUntilStopped(): Promise<void> {
    while (this.running) {
      try {
        const coupons = await listActiveCoupons(
          this.ctx.db,
          [this.mode],
          ACTIVE_GRACE_MS,
          ACTIVE_LOOKAHEAD_MS,
        )
        this.active = new Set(coupons.map((coupon) => coupon.id))
        for (const coupon of coupons) {
          await ensureLoaded(this.ctx, coupon, this.pending)
          if (!this.loops.has(coupon.id)) {
            const loops = Array.from({ length: this.options.loopsPerCoupon }, (_, i) =>
              this.drainLoop(coupon, i),
            )
            this.loops.set(
              coupon.id,
              Promise.allSettled(loops).then(() => {
                this.loops.delete(coupon.id)
              }),
            )
          }
        }
      } catch (error) {
        this.ctx.logger.warn({ err: error }, `${this.name}: refreshing active coupons failed`)
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.refreshMs)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  private async drainLoop(coupon: Coupon, index: number): Promise<void> {
    const keys = couponKeys(this.ctx.redisPrefix, coupon.id)
    const reader = duplicateRedis(this.ctx.redis, `${this.consumer}-c${coupon.id}-${index}`)
    // Connection errors surface as failed reads below (and are logged there); unhandled, the event would
    // only be printed.
    reader.on('error', () => {})
    let lastReclaim = Date.now()
    try {
      await connectRedis(reader)
      while (this.running && this.active.has(coupon.id)) {
        try {
          // One loop per coupon and process reclaims; the others only read new entries.
          if (index === 0 && Date.now() - lastReclaim >= Math.min(this.options.reclaimIdleMs, 1_000)) {
            lastReclaim = Date.now()
            await this.reclaim(coupon)
          }
          const reply = await reader.xreadgroup(
            'GROUP',
            this.group,
            this.consumer,
            'COUNT',
            this.options.batchSize,
            'BLOCK',
            this.options.blockMs,
            'STREAMS',
            keys.stream,
            '>',
          )
          const entries = readGroupEntries(reply)
          if (entries.length > 0) await this.process(coupon, entries)
        } catch (error) {
          if (error instanceof Error && error.message.startsWith('NOGROUP')) {
            // The stream was lost with Redis: recreate the group (the state is rebuilt by refreshLoop).
            await ensureGroup(this.ctx, keys.stream, this.group).catch((groupError: unknown) => {
              this.ctx.logger.warn(
                { err: groupError, couponId: coupon.id },
                `${this.name}: recreating the consumer group failed`,
              )
            })
            continue
          }
          this.ctx.logger.warn({ err: error, couponId: coupon.id }, `${this.name}: drain failed, retrying`)
          await sleep(200)
        }
      }
    } finally {
      reader.disconnect()
    }
  }

  /**
   * Sinks a batch and acknowledges it. While the sink fails because Redis, Postgres or Kafka is away, the
   * batch is retried in place (kept claimed, so nobody takes it over and no delivery is counted): an outage
   * must never walk accepted requests towards the dead letters. Any other failure is retried entry by
   * entry, so one poison entry cannot hold up the rest.
   */
  private async process(coupon: Coupon, entries: StreamEntry[]): Promise<void> {
    const ids = entries.map((entry) => entry.id)
    const keepClaimed = setInterval(
      () => void this.touch(coupon.id, ids),
      Math.max(this.options.reclaimIdleMs / 3, 100),
    )
    try {
      await retry(
        async () => {
          const held = await this.replicated(coupon.id, entries)
          if (held.length === 0) return
          await this.sink(coupon, held)
          // Only those: an entry this node has but not as pending here is read again (never deleted unseen).
          await this.acknowledge(
            coupon.id,
            held.map((entry) => entry.id),
          )
        },
        {
          logger: this.ctx.logger,
          warning: `${this.name}: dependency away, retrying the batch`,
          fields: { couponId: coupon.id },
          signal: this.stopping.signal,
          retryable: isInfrastructureError,
        },
      )
      return
    } catch (error) {
      if (entries.length === 1) this.lastErrors.set(ids[0]!, errorText(error))
      if (entries.length === 1 || !this.running) throw error
      this.ctx.logger.warn(
        { err: error, couponId: coupon.id },
        `${this.name}: batch failed, retrying entries one by one`,
      )
    } finally {
      clearInterval(keepClaimed)
    }
    for (const entry of entries) {
      try {
        if ((await this.replicated(coupon.id, [entry])).length === 0) continue
        await this.sink(coupon, [entry])
        await this.acknowledge(coupon.id, [entry.id])
      } catch (error) {
        // Left pending: reclaimed later, dead-lettered after maxDeliveries.
        this.lastErrors.set(entry.id, errorText(error))
      }
    }
  }

  /**
   * REDIS_REPLICA_ACK: the entries still pending here once the replicas have them (XCLAIM JUSTID answers
   * the ids the node holds). An entry read from a master that died before replicating it is not on the
   * promoted replica: its user was answered 503, and it must not become a row (its unit and position are
   * free again there). Without the setting, every entry.
   */
  private async replicated(couponId: number, entries: StreamEntry[]): Promise<StreamEntry[]> {
    if (this.ctx.replicaAck === undefined) return entries
    const { stream } = couponKeys(this.ctx.redisPrefix, couponId)
    const ids = entries.map((entry) => entry.id)
    const reply = await readReplicated(this.ctx, couponId, (pipeline) =>
      pipeline.xclaim(stream, this.group, this.consumer, 0, ...ids, 'JUSTID'),
    )
    const held = new Set(Array.isArray(reply) ? reply.map(String) : [])
    return entries.filter((entry) => held.has(entry.id))
  }

  /** Resets the idle time of entries still being worked on (XCLAIM JUSTID counts no delivery). */
  private async touch(couponId: number, ids: string[]): Promise<void> {
    const { stream } = couponKeys(this.ctx.redisPrefix, couponId)
    // A missed touch only lets the entries look idle sooner; a batch taken over is written idempotently.
    await this.ctx.redis.xclaim(stream, this.group, this.consumer, 0, ...ids, 'JUSTID').catch(() => {})
  }

  /** XACK, and XDEL unless the entries must stay readable (the Kafka relay: until Postgres has them). */
  private async acknowledge(couponId: number, ids: string[]): Promise<void> {
    const { stream } = couponKeys(this.ctx.redisPrefix, couponId)
    const tx = this.ctx.redis.multi().xack(stream, this.group, ...ids)
    if (this.options.deleteOnAck) tx.xdel(stream, ...ids)
    await tx.exec()
    for (const id of ids) this.lastErrors.delete(id)
  }

  /** Takes over entries idle past reclaimIdleMs (a dead or stalled consumer, or an entry that failed). */
  private async reclaim(coupon: Coupon): Promise<void> {
    const { stream } = couponKeys(this.ctx.redisPrefix, coupon.id)
    let cursor = '0-0'
    do {
      const reply = await this.ctx.redis.xautoclaim(
        stream,
        this.group,
        this.consumer,
        this.options.reclaimIdleMs,
        cursor,
        'COUNT',
        this.options.batchSize,
      )
      const claimed = autoclaimEntries(reply)
      cursor = claimed.cursor
      const entries = claimed.entries
      if (entries.length === 0) continue
      const poison = await this.overDelivered(stream, entries)
      if (poison.length > 0) await this.deadLetter(coupon.id, poison)
      const healthy = entries.filter((entry) => !poison.includes(entry))
      if (healthy.length > 0) {
        this.ctx.logger.info(
          { couponId: coupon.id, count: healthy.length },
          `${this.name}: reclaimed pending entries`,
        )
        await this.process(coupon, healthy)
      }
    } while (cursor !== '0-0' && this.running)
  }

  private async overDelivered(stream: string, entries: StreamEntry[]): Promise<StreamEntry[]> {
    const deliveries = deliveryCounts(
      await this.ctx.redis.xpending(
        stream,
        this.group,
        entries[0]!.id,
        entries.at(-1)!.id,
        entries.length,
        this.consumer,
      ),
    )
    return entries.filter((entry) => (deliveries.get(entry.id) ?? 0) > this.options.maxDeliveries)
  }

  private async deadLetter(couponId: number, entries: StreamEntry[]): Promise<void> {
    const keys = couponKeys(this.ctx.redisPrefix, couponId)
    const tx = this.ctx.redis.multi()
    for (const entry of entries) {
      tx.xadd(
        keys.deadLetters,
        '*',
        'id',
        entry.id,
        'u',
        entry.userId,
        'p',
        String(entry.position),
        't',
        String(entry.requestedAtMs),
        'error',
        this.lastErrors.get(entry.id) ?? `failed ${this.options.maxDeliveries} deliveries`,
        'group',
        this.group,
      )
    }
    const ids = entries.map((entry) => entry.id)
    await tx
      .xack(keys.stream, this.group, ...ids)
      .xdel(keys.stream, ...ids)
      .exec()
    for (const id of ids) this.lastErrors.delete(id)
    this.ctx.logger.error({ couponId, ids }, `${this.name}: entries moved to the dead-letter stream`)
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
