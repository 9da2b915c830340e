import type { Producer } from '@platformatic/kafka'
import type { Coupon } from '../../domain/coupon.ts'
import type { IssuanceContext } from '../core/context.ts'
import type { IssuanceWorker } from '../core/mode.ts'
import { retry } from '../plumbing/retry.ts'
import { DEFAULT_DRAIN_OPTIONS, type DrainOptions, StreamDrainer } from '../stream/stream-drainer.ts'
import { STREAM_GROUPS, type StreamEntry } from '../stream/stream-entries.ts'
import { encodeRequest } from './kafka-messages.ts'
import { type KafkaOptions, kafkaClient, type ResolvedKafkaOptions } from './kafka-options.ts'

/**
 * The relay's drain defaults. An entry only goes back to the group when a relay died or stopped mid-batch
 * (a live relay retries its batch in place and keeps it claimed), so it is taken over sooner than in the
 * stream mode, and the dead-letter bound is far away: a relay entry is never poison, only early. One drain
 * at a time per coupon and process (reads and take-overs alike) keeps a coupon's requests in admission
 * order on its partition.
 */
const RELAY_DRAIN_DEFAULTS: Partial<DrainOptions> = {
  reclaimIdleMs: 10_000,
  maxDeliveries: 100,
  loopsPerCoupon: 1,
  // Entries stay in the stream (acknowledged) until the writers have them in Postgres and delete them,
  // so a rebuild after a Redis loss still counts requests that are in Kafka but not yet rows.
  deleteOnAck: false,
}

/**
 * Moves accepted requests from the coupons' Redis streams (the outbox, written atomically with the
 * admission) to the requests topic. A batch is XACKed only after the idempotent producer's
 * send resolved, i.e. every message is on all in-sync replicas (acks=all); a relay killed in between
 * leaves the entries pending, and the next relay publishes them again (at least once; the consumers'
 * Postgres write is idempotent). While the broker is down the relay retries its batch in place with
 * backoff; admissions never wait for it.
 */
export class KafkaRelay implements IssuanceWorker {
  readonly name = 'kafka-relay'
  protected readonly ctx: IssuanceContext
  protected readonly options: ResolvedKafkaOptions
  private readonly producer: Producer<string, string, string, string>
  private readonly drainer: StreamDrainer
  private readonly drainOptions: DrainOptions
  private readonly stopping = new AbortController()
  private readonly ensureTopics: () => Promise<void>

  constructor(ctx: IssuanceContext, options: KafkaOptions) {
    this.ctx = ctx
    const client = kafkaClient(options, 'relay')
    this.options = client.options
    this.ensureTopics = client.ensureTopics
    this.drainOptions = { ...DEFAULT_DRAIN_OPTIONS, ...RELAY_DRAIN_DEFAULTS, ...this.options.drain }
    this.producer = client.producer
    this.drainer = new StreamDrainer(
      ctx,
      'kafka',
      STREAM_GROUPS.kafka,
      (coupon, entries) => this.relay(coupon, entries),
      this.drainOptions,
    )
  }

  async start(): Promise<void> {
    await this.drainer.start()
  }

  async stop(): Promise<void> {
    this.stopping.abort()
    await this.drainer.stop()
    await this.producer.close().catch((error: unknown) => {
      this.ctx.logger.debug({ err: error }, 'kafka relay: closing the producer failed')
    })
  }

  /** Publishes one batch; resolves once the broker acknowledged all of it (acks=all: every in-sync replica). */
  protected async publish(coupon: Coupon, entries: StreamEntry[]): Promise<void> {
    const key = String(coupon.id)
    await this.producer.send({
      messages: entries.map((entry) => ({
        topic: this.options.topics.requests,
        key,
        value: encodeRequest(coupon.id, entry),
      })),
    })
  }

  /**
   * The drainer's sink: retries in place until published, so an outage never reaches the dead letters (the
   * drainer keeps the entries claimed meanwhile, so no other loop or relay takes them over).
   */
  private async relay(coupon: Coupon, entries: StreamEntry[]): Promise<void> {
    await retry(
      async (attempt) => {
        // Rejecting leaves the entries pending: the next relay (or this one, restarted) takes them over.
        if (this.stopping.signal.aborted) throw new Error('relay stopping')
        await this.ensureTopics()
        await this.publish(coupon, entries)
        if (attempt > 0) {
          this.ctx.logger.info({ couponId: coupon.id, attempts: attempt + 1 }, 'kafka relay: published again')
        }
      },
      {
        logger: this.ctx.logger,
        warning: 'kafka relay: publish failed, retrying (entries stay pending in Redis)',
        fields: { couponId: coupon.id, count: entries.length },
        signal: this.stopping.signal,
      },
    )
  }
}
