import { Admin, findErrorBy, ProduceAcks, Producer, stringSerializers } from '@platformatic/kafka'
import type { DrainOptions } from '../stream/stream-drainer.ts'

/** How the `kafka` mode reaches its broker; only `brokers` is required. */
export interface KafkaOptions {
  /** Bootstrap brokers, `host:port` (KAFKA_BROKERS). */
  brokers: string[]
  /** Prepended to every topic name (tests use one prefix each); production uses none. */
  topicPrefix?: string
  clientId?: string
  /** Consumer group of the Postgres writers on the requests topic. */
  groupId?: string
  /** Partitions of the topics created at start (a coupon's requests always share one, keyed by coupon). */
  partitions?: number
  /** Replication factor of the topics created at start; -1 takes the broker's default.replication.factor. */
  replicationFactor?: number
  /** Most messages written to Postgres per consumer batch. */
  batchSize?: number
  /** A dead consumer's partitions move to a live one after this long (broker minimum 6 s). */
  sessionTimeoutMs?: number
  heartbeatIntervalMs?: number
  /** The relay's drain of the coupon streams (see StreamDrainer). */
  drain?: Partial<DrainOptions>
}

export interface KafkaTopics {
  /** Accepted requests, keyed by coupon id: the relay writes, the consumer group reads. */
  requests: string
  /** Every issued coupon, for other services (at least once; `userCouponId` identifies it). */
  issued: string
  /** Request messages the consumers could not use (malformed, unknown coupon), parked with the reason. */
  dead: string
}

export type ResolvedKafkaOptions = Required<Omit<KafkaOptions, 'topicPrefix' | 'drain'>> & {
  topics: KafkaTopics
  drain: Partial<DrainOptions>
}

export const DEFAULT_TOPICS: KafkaTopics = {
  requests: 'coupon.requests',
  issued: 'coupon.issued',
  dead: 'coupon.requests.dlq',
}

export function resolveKafkaOptions(options: KafkaOptions): ResolvedKafkaOptions {
  if (options.brokers.length === 0) throw new Error('the kafka mode needs at least one broker')
  const prefix = options.topicPrefix ?? ''
  return {
    brokers: options.brokers,
    clientId: options.clientId ?? 'coupon-rush',
    groupId: options.groupId ?? 'coupon-rush-writers',
    partitions: options.partitions ?? 6,
    replicationFactor: options.replicationFactor ?? -1,
    batchSize: options.batchSize ?? 2_000,
    sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1_000,
    topics: {
      requests: `${prefix}${DEFAULT_TOPICS.requests}`,
      issued: `${prefix}${DEFAULT_TOPICS.issued}`,
      dead: `${prefix}${DEFAULT_TOPICS.dead}`,
    },
    drain: options.drain ?? {},
  }
}

/** Creates the mode's topics unless they exist (any number of processes may race here). */
export async function ensureTopics(options: ResolvedKafkaOptions): Promise<void> {
  const admin = new Admin({ clientId: `${options.clientId}-admin`, bootstrapBrokers: options.brokers })
  try {
    for (const topic of Object.values(options.topics)) {
      try {
        await admin.createTopics({
          topics: [topic],
          partitions: options.partitions,
          replicas: options.replicationFactor,
        })
      } catch (error) {
        if (!(error instanceof Error) || !findErrorBy(error, 'apiId', 'TOPIC_ALREADY_EXISTS')) throw error
      }
    }
  } finally {
    // Best effort: the topics are made (or the error above is thrown); a failed close only leaks a socket
    // the broker drops.
    await admin.close().catch(() => {})
  }
}

/** `ensureTopics` once per client: later calls reuse the first success, a failure is retried next call. */
export function topicsEnsurer(options: ResolvedKafkaOptions): () => Promise<void> {
  let ready: Promise<void> | undefined
  return () => {
    ready ??= ensureTopics(options).catch((error: unknown) => {
      ready = undefined
      throw error
    })
    return ready
  }
}

/**
 * An idempotent producer that resolves a send only once every in-sync replica has it (acks=all). Few
 * client-side retries: the relay and the writers retry in their own loops for as long as the broker is away.
 */
export function createProducer(
  options: ResolvedKafkaOptions,
  role: string,
): Producer<string, string, string, string> {
  return new Producer({
    clientId: `${options.clientId}-${role}`,
    bootstrapBrokers: options.brokers,
    idempotent: true,
    acks: ProduceAcks.ALL,
    serializers: stringSerializers,
    autocreateTopics: false,
    retries: 2,
    retryDelay: 250,
  })
}

/** What the relay and each writer hold of Kafka: the resolved options, a producer, the topics' set-up. */
export interface KafkaClient {
  options: ResolvedKafkaOptions
  producer: Producer<string, string, string, string>
  ensureTopics: () => Promise<void>
}

export function kafkaClient(options: KafkaOptions, role: string): KafkaClient {
  const resolved = resolveKafkaOptions(options)
  return {
    options: resolved,
    producer: createProducer(resolved, role),
    ensureTopics: topicsEnsurer(resolved),
  }
}
