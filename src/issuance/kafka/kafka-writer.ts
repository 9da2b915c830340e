import {
  Consumer,
  type Message,
  type MessagesStream,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  type Producer,
  stringDeserializers,
} from '@platformatic/kafka'
import type { Coupon, Issuance } from '../../domain/coupon.ts'
import type { IssueRequest } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import { CouponStates } from '../core/coupon-state.ts'
import { writeIssued } from '../core/decisions.ts'
import type { IssuanceWorker } from '../core/mode.ts'
import { toIssuance } from '../core/record.ts'
import { CouponCache } from '../plumbing/coupon-cache.ts'
import { retry } from '../plumbing/retry.ts'
import { type IssuedEvent, issuedEvent, parseRequest } from './kafka-messages.ts'
import { type KafkaOptions, kafkaClient, type ResolvedKafkaOptions } from './kafka-options.ts'

type RequestMessage = Message<string, string, string, string>
type RequestStream = MessagesStream<string, string, string, string>

interface Parked {
  message: RequestMessage
  reason: string
}

/** Attempts before a batch Postgres refuses for its data (SQLSTATE class 22 or 23) is parked. */
const DATA_ERROR_ATTEMPTS = 5
const CLOSE_TIMEOUT_MS = 10_000
const HEALTHY_MS = 30_000

/**
 * A member of the consumer group on the requests topic. For each fetched batch it writes every coupon's
 * requests to Postgres in one guarded, idempotent transaction (`writeIssued`, as the stream writers do),
 * publishes the issued coupons to the issued topic, and only then commits the batch's offsets. A crash
 * anywhere before the offset commit redelivers the batch, which then issues nothing twice.
 *
 * Messages that cannot be requests (bad JSON or fields, unknown coupon) are parked on the dead-letter
 * topic with the reason and their offsets committed, so they never hold up their partition. Postgres
 * or broker outages are retried in place; a broken group membership or stream reconnects.
 */
export class KafkaWriter implements IssuanceWorker {
  readonly name = 'kafka-writer'
  protected readonly ctx: IssuanceContext
  protected readonly options: ResolvedKafkaOptions
  private readonly producer: Producer<string, string, string, string>
  private readonly stopping = new AbortController()
  /** The coupons' definitions in memory, as the API keeps them (a batch names a few coupons, again and again). */
  private readonly coupons: CouponCache
  private readonly states: CouponStates
  private readonly ensureTopics: () => Promise<void>
  private loop: Promise<void> | undefined

  constructor(ctx: IssuanceContext, options: KafkaOptions) {
    this.ctx = ctx
    const client = kafkaClient(options, 'writer')
    this.options = client.options
    this.ensureTopics = client.ensureTopics
    this.producer = client.producer
    this.coupons = new CouponCache(ctx.db)
    this.states = new CouponStates(ctx)
  }

  async start(): Promise<void> {
    this.loop ??= this.run()
  }

  async stop(): Promise<void> {
    this.stopping.abort()
    await this.loop
    await this.producer.close().catch((error: unknown) => {
      this.ctx.logger.debug({ err: error }, 'kafka writer: closing the producer failed')
    })
  }

  /** Writes one coupon's requests to Postgres (and Redis, SSE): the step before anything is published. */
  protected async write(coupon: Coupon, requests: IssueRequest[]): Promise<Issuance[]> {
    const decisions = await writeIssued(this.ctx, this.states.of(coupon.id), coupon, requests)
    return decisions.map(([userId, record]) => toIssuance(coupon.id, userId, record))
  }

  /** Joins the group and consumes until stopped; any failure of the consumer starts a fresh one. */
  private async run(): Promise<void> {
    await retry(() => this.consumeOnce(), {
      logger: this.ctx.logger,
      warning: 'kafka writer: consumer failed, reconnecting',
      logEvery: 10,
      signal: this.stopping.signal,
      // A consumer that served a while starts the backoff over; one that keeps failing backs off.
      resetAfterMs: HEALTHY_MS,
    }).catch((error: unknown) => {
      // Thrown only once stopping: the last consumer's failure no longer matters.
      this.ctx.logger.debug({ err: error }, 'kafka writer: consumer ended while stopping')
    })
  }

  /** One consumer-group member's life: join, consume until stopped (returns) or failed (throws), close. */
  private async consumeOnce(): Promise<void> {
    const consumer = new Consumer({
      clientId: `${this.options.clientId}-writer`,
      groupId: this.options.groupId,
      bootstrapBrokers: this.options.brokers,
      deserializers: stringDeserializers,
      autocommit: false,
      sessionTimeout: this.options.sessionTimeoutMs,
      heartbeatInterval: this.options.heartbeatIntervalMs,
      highWaterMark: this.options.batchSize,
      maxWaitTime: 500,
      retries: 2,
      retryDelay: 250,
    })
    // Unhandled, an 'error' event (a failed rejoin) would crash the process; pump() listens for it and acts.
    consumer.on('error', () => {})
    try {
      await this.ensureTopics()
      const stream = await consumer.consume({
        topics: [this.options.topics.requests],
        mode: MessagesStreamModes.COMMITTED,
        // A new group starts at the beginning, so nothing published before it existed is skipped.
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        autocommit: false,
      })
      await this.pump(consumer, stream)
    } finally {
      await withTimeout(consumer.close(true), CLOSE_TIMEOUT_MS).catch((error: unknown) => {
        this.ctx.logger.debug({ err: error }, 'kafka writer: closing a failed consumer failed')
      })
    }
  }

  /** Reads whatever is buffered (up to batchSize) as one batch, handles it, repeats. */
  private async pump(consumer: Consumer<string, string, string, string>, stream: RequestStream) {
    let wake = () => {}
    let failure: unknown
    const signal = () => wake()
    const fail = (error: unknown) => {
      failure ??= error
      wake()
    }
    const onStalled = () => fail(new Error('consumer heartbeats stalled'))
    stream.on('readable', signal)
    stream.on('end', signal)
    stream.on('close', signal)
    stream.on('error', fail)
    consumer.on('error', fail)
    consumer.on('consumer:heartbeat:stalled', onStalled)
    this.stopping.signal.addEventListener('abort', signal)
    try {
      while (!this.stopping.signal.aborted) {
        const batch: RequestMessage[] = []
        for (let message: RequestMessage | null; batch.length < this.options.batchSize; ) {
          message = stream.read() as RequestMessage | null
          if (message === null) break
          batch.push(message)
        }
        if (batch.length > 0) {
          await this.handle(batch)
          continue
        }
        if (failure !== undefined) throw failure
        if (stream.destroyed || stream.readableEnded) throw new Error('consumer stream closed')
        await new Promise<void>((resolve) => {
          wake = resolve
        })
      }
    } finally {
      this.stopping.signal.removeEventListener('abort', signal)
      stream.off('readable', signal)
      consumer.off('consumer:heartbeat:stalled', onStalled)
      // Keep swallowing late errors of this consumer while it closes.
      wake = () => {}
    }
  }

  /** Postgres first, then the issued topic, then the offsets: each step only after the one before. */
  private async handle(batch: RequestMessage[]): Promise<void> {
    const byCoupon = new Map<
      number,
      { messages: RequestMessage[]; requests: IssueRequest[]; entryIds: string[] }
    >()
    const parked: Parked[] = []
    for (const message of batch) {
      const request = parseRequest(message.key, message.value)
      if ('invalid' in request) {
        parked.push({ message, reason: request.invalid })
        continue
      }
      let group = byCoupon.get(request.couponId)
      if (group === undefined) {
        group = { messages: [], requests: [], entryIds: [] }
        byCoupon.set(request.couponId, group)
      }
      group.messages.push(message)
      if (request.entryId !== undefined) group.entryIds.push(request.entryId)
      group.requests.push({
        userId: request.userId,
        position: request.position,
        requestedAt: new Date(request.requestedAtMs),
      })
    }
    const events: IssuedEvent[] = []
    for (const [couponId, { messages, requests, entryIds }] of byCoupon) {
      const coupon = await this.retry('loading the coupon', () => this.coupons.get(couponId))
      if (coupon === undefined) {
        parked.push(...messages.map((message) => ({ message, reason: `no coupon ${couponId}` })))
        continue
      }
      let dataErrors = 0
      const written = await this.retry(`writing coupon ${couponId}`, async () => {
        try {
          return await this.write(coupon, requests)
        } catch (error) {
          if (isDataError(error) && ++dataErrors >= DATA_ERROR_ATTEMPTS) return new GaveUp(error)
          throw error
        }
      })
      if (written instanceof GaveUp) {
        parked.push(...messages.map((message) => ({ message, reason: `postgres: ${written.message}` })))
        continue
      }
      await this.forgetRelayed(couponId, entryIds)
      for (const issuance of written) {
        const event = issuedEvent(issuance)
        if (event !== undefined) events.push(event)
      }
    }
    if (parked.length > 0) {
      this.ctx.logger.error(
        { count: parked.length, reasons: [...new Set(parked.map((p) => p.reason))].slice(0, 5) },
        'kafka writer: parking unusable request messages on the dead-letter topic',
      )
    }
    if (events.length + parked.length > 0) {
      await this.retry('publishing issued coupons', () => this.publish(events, parked))
    }
    await this.commit(batch)
  }

  /**
   * The relay leaves its entries in the coupon's stream until they are rows (a rebuild after a Redis loss
   * counts them); once Postgres committed, they go. If this fails, the redelivered batch deletes them.
   */
  private async forgetRelayed(couponId: number, entryIds: string[]): Promise<void> {
    if (entryIds.length === 0) return
    const { stream } = this.states.of(couponId).keys
    await this.ctx.redis.xdel(stream, ...entryIds).catch((error: unknown) => {
      this.ctx.logger.warn({ err: error, couponId }, 'kafka writer: could not delete relayed entries yet')
    })
  }

  private async publish(events: IssuedEvent[], parked: Parked[]): Promise<void> {
    await this.producer.send({
      messages: [
        ...events.map((event) => ({
          topic: this.options.topics.issued,
          key: String(event.couponId),
          value: JSON.stringify(event),
        })),
        ...parked.map(({ message, reason }) => ({
          topic: this.options.topics.dead,
          key: message.key,
          value: message.value,
          headers: {
            reason,
            topic: message.topic,
            partition: String(message.partition),
            offset: String(message.offset),
          },
        })),
      ],
    })
  }

  /** Commits, per partition, the offset after the batch's last message. */
  private async commit(batch: RequestMessage[]): Promise<void> {
    const last = new Map<string, RequestMessage>()
    for (const message of batch) {
      const key = `${message.topic}:${message.partition}`
      const seen = last.get(key)
      if (seen === undefined || seen.offset < message.offset) last.set(key, message)
    }
    await Promise.all([...last.values()].map((message) => message.commit()))
  }

  /** Runs `work` until it succeeds, backing off (an outage must not skip messages); throws once stopping. */
  private retry<T>(what: string, work: () => Promise<T>): Promise<T> {
    return retry(work, {
      logger: this.ctx.logger,
      warning: `kafka writer: ${what} failed, retrying`,
      signal: this.stopping.signal,
    })
  }
}

class GaveUp {
  readonly message: string
  constructor(error: unknown) {
    this.message = error instanceof Error ? error.message : String(error)
  }
}

/** Postgres refused the data itself (SQLSTATE class 22 data exception, 23 integrity): retrying cannot help. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}
