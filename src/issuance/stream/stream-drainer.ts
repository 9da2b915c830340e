import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Coupon, IssueMode } from '../../domain/coupon.ts'
import { isInfrastructureError } from '../../domain/errors.ts'
import { writerBatchRows, writerLingerSeconds } from '../../monitoring/writer-metrics.ts'
import type { IssuanceContext } from '../core/context.ts'
import { type CouponState, CouponStates } from '../core/coupon-state.ts'
import type { IssuanceWorker } from '../core/mode.ts'
import { StateLoader } from '../core/rebuild.ts'
import {
  ACTIVE_GRACE_MS,
  ACTIVE_LOOKAHEAD_MS,
  ActiveCoupons,
  type TrackedCoupon,
} from '../plumbing/active-coupons.ts'
import { retry } from '../plumbing/retry.ts'
import {
  acknowledgeAndTrim,
  autoclaimEntries,
  deliveryCounts,
  ensureGroup,
  pendingCount,
  readGroupEntries,
  type StreamEntry,
  streamPending,
} from './stream-entries.ts'

export interface DrainOptions {
  /** Entries read per batch (the batch is whatever arrived, up to this many). */
  batchSize: number
  /** An entry pending this long on a consumer is taken over (longer than the slowest batch). */
  reclaimIdleMs: number
  /** An entry delivered this many times without success goes to the dead-letter stream. */
  maxDeliveries: number
  /** How often the list of coupons to drain is refreshed from Postgres. */
  refreshMs: number
  /**
   * How often every active coupon is looked at once (XPENDING on its stream, HGET of its wake flag), the
   * safety net under the wake-ups: pending entries of a dead consumer are taken over, a missed wake-up is
   * made up for. Default: reclaimIdleMs, at most 20 s (0.1 commands per idle coupon per second).
   */
  sweepMs?: number
  /**
   * Concurrent drains of one coupon in this process while it has a backlog (a read came back full). Their
   * transactions queue on the coupon's row lock, but while one writes Postgres another reads the stream and
   * acknowledges, so the stages overlap. A coupon whose entries one drain keeps up with has one; an idle
   * coupon has none.
   */
  loopsPerCoupon: number
  /**
   * Delete entries when acknowledging (default). The Kafka relay keeps them until its writers have them in
   * Postgres, so a rebuild after a Redis loss still counts requests that are in Kafka but not yet rows.
   */
  deleteOnAck: boolean
  /**
   * After a partial batch, a drain waits before reading again for about the time the next batch takes to
   * fill at the rate entries arrived (at most this long): a busy stream is written in full batches, which
   * costs Postgres a third of what batches of a hundred did. 0: read again at once.
   */
  maxLingerMs: number
  /**
   * The sink acknowledges and trims the entries itself once durable, in the call that records their
   * decisions (the stream writers: settleIssued-4.lua), which saves the drainer's own call per batch.
   */
  sinkAcknowledges: boolean
}

export const DEFAULT_DRAIN_OPTIONS: DrainOptions = {
  batchSize: 2_000,
  reclaimIdleMs: 30_000,
  maxDeliveries: 5,
  refreshMs: 1_000,
  loopsPerCoupon: 3,
  deleteOnAck: true,
  maxLingerMs: 50,
  sinkAcknowledges: false,
}

const MAX_SWEEP_MS = 20_000

/**
 * Hands a batch of one coupon's entries to its sink (Postgres, or Kafka), with the coupon's Redis state.
 * Resolves once they are durable (and acknowledged, with `sinkAcknowledges`).
 */
export type BatchSink = (coupon: Coupon, entries: StreamEntry[], state: CouponState) => Promise<void>

/** One active coupon as this drainer sees it (`key`: its stream). */
interface CouponDrain extends TrackedCoupon {
  state: CouponState
  /** Drains running now (at most loopsPerCoupon). */
  running: number
  /** Set by a wake-up after the wake flag was cleared: a drain whose read came back empty reads again. */
  dirty: boolean
  reclaiming: boolean
}

/**
 * Drains the streams of every active coupon of one mode through a consumer group: reads in batches, hands
 * each batch to the sink, and only after the sink made it durable acknowledges and deletes the entries
 * (unacknowledged entries are never trimmed). Pending entries of a dead or stalled consumer are reclaimed
 * with XAUTOCLAIM; an entry that keeps failing goes to the coupon's dead-letter stream with its error.
 *
 * Nothing runs per coupon while it is idle: no loop, no blocking read, no connection. The admission script
 * publishes the stream's key on one wake-up channel when the stream gets its first entry since a drainer
 * last cleared the coupon's wake flag; the drainer (one subscriber per process) clears the flag, then reads
 * until a read comes back empty. A sweep looks at every stream once per sweepMs (reclaim, missed wake-ups).
 * Every command names one key (or one coupon's keys), so it runs unchanged on Redis Cluster.
 */
export class StreamDrainer implements IssuanceWorker {
  readonly name: string
  readonly consumer = `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  private readonly tasks = new Set<Promise<void>>()
  private readonly lastErrors = new Map<string, string>()
  private running = false
  /** Aborted by stop(): a batch retried in place is left pending for the next drainer. */
  private stopping = new AbortController()

  private readonly ctx: IssuanceContext
  private readonly group: string
  private readonly sink: BatchSink
  private readonly options: DrainOptions
  private readonly states: CouponStates
  private readonly loader: StateLoader
  private readonly active: ActiveCoupons<CouponDrain>

  constructor(
    ctx: IssuanceContext,
    mode: Extract<IssueMode, 'stream' | 'kafka'>,
    group: string,
    sink: BatchSink,
    options: Partial<DrainOptions> = {},
  ) {
    this.ctx = ctx
    this.group = group
    this.sink = sink
    this.options = { ...DEFAULT_DRAIN_OPTIONS, ...options }
    this.name = `${mode}-drainer`
    this.states = new CouponStates(ctx)
    this.loader = new StateLoader(ctx, this.states, streamPending(this.states, group))
    this.active = new ActiveCoupons<CouponDrain>(ctx, {
      name: this.name,
      modes: [mode],
      graceMs: ACTIVE_GRACE_MS,
      lookaheadMs: ACTIVE_LOOKAHEAD_MS,
      refreshMs: this.options.refreshMs,
      sweepMs: this.options.sweepMs ?? Math.min(this.options.reclaimIdleMs, MAX_SWEEP_MS),
      track: (coupon) => {
        const state = this.states.of(coupon.id)
        return { coupon, state, key: state.keys.stream, running: 0, dirty: false, reclaiming: false }
      },
      // Entries may have arrived before this process listened (a restart): drain each new coupon once.
      added: async (drain) => {
        await this.loader.ensureLoaded(drain.coupon)
        this.wake(drain)
      },
      woken: (drain) => this.wake(drain),
      sweep: (drain) => this.inspect(drain),
    })
  }

  async start(): Promise<void> {
    this.running = true
    this.stopping = new AbortController()
    this.active.start()
  }

  async stop(): Promise<void> {
    this.running = false
    this.stopping.abort()
    await this.active.stop()
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks])
  }

  /**
   * Clears the coupon's wake flag, then makes sure a drain reads the stream after that: a new one when none
   * runs, else the running one reads again before it stops. The clear is not awaited: it goes first on the
   * connection the reads use (one coupon's keys live on one node), so every read sent from here on runs after
   * it.
   */
  private wake(drain: CouponDrain): void {
    if (!this.running) return
    drain.state.clearWake().catch((error: unknown) => {
      // The flag stays set, so admissions stop waking the drainers of this coupon until the sweep drains it.
      this.ctx.logger.warn({ err: error, couponId: drain.coupon.id }, `${this.name}: wake-up failed`)
    })
    drain.dirty = true
    // A running drain reads again before it stops (it sees `dirty`), after its linger: the entries of a
    // steady trickle wait for it and are written in one batch, not one small batch per extra drain.
    if (drain.running === 0) this.startDrain(drain)
  }

  private track(task: Promise<void>): void {
    this.tasks.add(task)
    void task.finally(() => this.tasks.delete(task))
  }

  private startDrain(drain: CouponDrain): void {
    if (!this.running || drain.running >= this.options.loopsPerCoupon) return
    drain.running++
    this.track(
      this.drain(drain).finally(() => {
        drain.running--
      }),
    )
  }

  /**
   * Reads the coupon's stream until a read comes back empty with no wake-up since it was sent. A full batch
   * starts one more drain (up to loopsPerCoupon), which reads while this one writes.
   */
  private async drain(drain: CouponDrain): Promise<void> {
    const { coupon, key: stream } = drain
    let lingerMs = 0
    let readAtMs = performance.now()
    while (this.running && this.active.get(coupon.id) === drain) {
      try {
        if (lingerMs > 0) {
          writerLingerSeconds.observe(lingerMs / 1000)
          await sleep(lingerMs)
        }
        lingerMs = 0
        drain.dirty = false
        const sinceLastReadMs = performance.now() - readAtMs
        readAtMs = performance.now()
        const reply = await this.ctx.redis.xreadgroup(
          'GROUP',
          this.group,
          this.consumer,
          'COUNT',
          this.options.batchSize,
          'STREAMS',
          stream,
          '>',
        )
        const entries = readGroupEntries(reply)
        if (entries.length === 0) {
          if (drain.dirty) continue
          return
        }
        writerBatchRows.observe(entries.length)
        // A full batch: more may be waiting, so one more drain reads while this one writes. A partial one
        // means this drain keeps up alone (each extra drain split the arrivals into smaller batches, and a
        // batch of 250 rows cost Postgres 9.0 us per row where one of 2,000 cost 5.2-7.0).
        if (entries.length >= this.options.batchSize) this.startDrain(drain)
        await this.process(drain, entries)
        lingerMs = this.lingerAfter(entries.length, sinceLastReadMs, performance.now() - readAtMs)
      } catch (error) {
        drain.dirty = true
        if (error instanceof Error && error.message.startsWith('NOGROUP')) {
          // The stream was lost with Redis: recreate the group (the state is rebuilt on the next admission).
          await ensureGroup(this.ctx.redis, stream, this.group).catch((groupError: unknown) => {
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
  }

  /**
   * How long to wait before the next read after a batch of `rows` read `sinceLastReadMs` after this drain's
   * previous read: the time a full batch takes to arrive at that rate, less the time since this read (the
   * batch's write), at most maxLingerMs. A full batch reads again at once.
   */
  private lingerAfter(rows: number, sinceLastReadMs: number, writeMs: number): number {
    const { batchSize, maxLingerMs } = this.options
    if (rows >= batchSize || maxLingerMs <= 0) return 0
    const fillMs = (batchSize * sinceLastReadMs) / rows - writeMs
    return Math.max(0, Math.round(Math.min(fillMs, maxLingerMs)))
  }

  /**
   * The sweep, once per sweepMs: two commands per active coupon (each on one key, so routed to its node on
   * a cluster): a coupon whose wake flag is still set (a wake-up nobody heard) is drained, a stream with
   * pending entries has those idle past reclaimIdleMs taken over, a lost stream or group is recreated.
   */
  private async inspect(drain: CouponDrain): Promise<void> {
    if (!this.running) return
    const { coupon, key: stream } = drain
    try {
      const [pending, unheard] = await Promise.all([
        pendingCount(this.ctx.redis, stream, this.group),
        drain.state.wakeIsSet(),
      ])
      if (unheard && drain.running === 0) this.wake(drain)
      // A reclaim takes one of the coupon's drain slots, so the relay (one per coupon) keeps publishing a
      // coupon's entries one batch at a time.
      if (pending > 0 && !drain.reclaiming && drain.running < this.options.loopsPerCoupon) {
        drain.reclaiming = true
        drain.running++
        this.track(
          this.reclaim(drain)
            .catch((error: unknown) => {
              this.ctx.logger.warn({ err: error, couponId: coupon.id }, `${this.name}: reclaim failed`)
            })
            .finally(() => {
              drain.reclaiming = false
              drain.running--
              // A wake-up that found every slot taken: drain now.
              if (drain.dirty) this.startDrain(drain)
            }),
        )
      }
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('NOGROUP')) {
        // Redis lost the stream or its group: rebuild a lost state (which recreates both), recreate a lost
        // group, and drain what is there.
        await this.loader
          .ensureLoaded(coupon)
          .then(() => ensureGroup(this.ctx.redis, stream, this.group))
          .then(() => this.wake(drain))
          .catch((rebuildError: unknown) => {
            this.ctx.logger.warn(
              { err: rebuildError, couponId: coupon.id },
              `${this.name}: rebuilding a lost stream failed, the next sweep retries`,
            )
          })
        return
      }
      this.ctx.logger.warn({ err: error, couponId: coupon.id }, `${this.name}: sweep failed`)
    }
  }

  /**
   * Sinks a batch and acknowledges it. While the sink fails because Redis, Postgres or Kafka is away, the
   * batch is retried in place (kept claimed, so nobody takes it over and no delivery is counted): an outage
   * must never walk accepted requests towards the dead letters. Any other failure is retried entry by
   * entry, so one poison entry cannot hold up the rest.
   */
  private async process(drain: CouponDrain, entries: StreamEntry[]): Promise<void> {
    const { coupon, state } = drain
    const ids = entries.map((entry) => entry.id)
    const keepClaimed = setInterval(
      () => void this.touch(state, ids),
      Math.max(this.options.reclaimIdleMs / 3, 100),
    )
    try {
      await retry(
        async () => {
          const held = await this.replicated(state, entries)
          if (held.length === 0) return
          // Only those: an entry this node has but not as pending here is read again (never deleted unseen).
          await this.sinkAndAcknowledge(coupon, held, state)
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
        if ((await this.replicated(state, [entry])).length === 0) continue
        await this.sinkAndAcknowledge(coupon, [entry], state)
      } catch (error) {
        // Left pending: reclaimed later, dead-lettered after maxDeliveries.
        this.lastErrors.set(entry.id, errorText(error))
      }
    }
  }

  /** The sink, then the acknowledgement unless the sink made it already. */
  private async sinkAndAcknowledge(
    coupon: Coupon,
    entries: StreamEntry[],
    state: CouponState,
  ): Promise<void> {
    const ids = entries.map((entry) => entry.id)
    await this.sink(coupon, entries, state)
    if (!this.options.sinkAcknowledges) await this.acknowledge(state, ids)
    else for (const id of ids) this.lastErrors.delete(id)
  }

  /**
   * REDIS_REPLICA_ACK: the entries still pending here once the replicas have them (XCLAIM JUSTID answers
   * the ids the node holds). An entry read from a master that died before replicating it is not on the
   * promoted replica: its user was answered 503, and it must not become a row (its unit and position are
   * free again there). Without the setting, every entry.
   */
  private async replicated(state: CouponState, entries: StreamEntry[]): Promise<StreamEntry[]> {
    if (this.ctx.replicaAck === undefined) return entries
    const ids = entries.map((entry) => entry.id)
    const reply = await state.readReplicated((pipeline) =>
      pipeline.xclaim(state.keys.stream, this.group, this.consumer, 0, ...ids, 'JUSTID'),
    )
    const held = new Set(Array.isArray(reply) ? reply.map(String) : [])
    return entries.filter((entry) => held.has(entry.id))
  }

  /** Resets the idle time of entries still being worked on (XCLAIM JUSTID counts no delivery). */
  private async touch(state: CouponState, ids: string[]): Promise<void> {
    // A missed touch only lets the entries look idle sooner; a batch taken over is written idempotently.
    await this.ctx.redis
      .xclaim(state.keys.stream, this.group, this.consumer, 0, ...ids, 'JUSTID')
      .catch(() => {})
  }

  /**
   * XACK, and trims what the group is done with in the same call (ackAndTrim-1.lua) unless the entries must
   * stay readable (the Kafka relay: until Postgres has them).
   */
  private async acknowledge(state: CouponState, ids: string[]): Promise<void> {
    const { stream } = state.keys
    if (this.options.deleteOnAck) await acknowledgeAndTrim(this.ctx.redis, stream, this.group, ids)
    else await this.ctx.redis.xack(stream, this.group, ...ids)
    for (const id of ids) this.lastErrors.delete(id)
  }

  /** Takes over entries idle past reclaimIdleMs (a dead or stalled consumer, or an entry that failed). */
  private async reclaim(drain: CouponDrain): Promise<void> {
    const { coupon, key: stream } = drain
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
      if (poison.length > 0) await this.deadLetter(drain.state, poison)
      const healthy = entries.filter((entry) => !poison.includes(entry))
      if (healthy.length > 0) {
        this.ctx.logger.info(
          { couponId: coupon.id, count: healthy.length },
          `${this.name}: reclaimed pending entries`,
        )
        await this.process(drain, healthy)
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

  private async deadLetter(state: CouponState, entries: StreamEntry[]): Promise<void> {
    const { keys, couponId } = state
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
    // The written entries behind a poison one were left for it: trim them now that it is gone.
    if (this.options.deleteOnAck) await this.acknowledge(state, ids)
    this.ctx.logger.error({ couponId, ids }, `${this.name}: entries moved to the dead-letter stream`)
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
