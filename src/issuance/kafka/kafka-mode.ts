import type { IssuanceContext } from '../core/context.ts'
import type { ClosableMode, IssuanceWorker } from '../core/mode.ts'
import { redisFirstMode } from '../core/redis-first.ts'
import { STREAM_GROUPS } from '../stream/stream-entries.ts'
import { streamAdmission } from '../stream/stream-mode.ts'
import { type KafkaOptions, resolveKafkaOptions } from './kafka-options.ts'
import { KafkaRelay } from './kafka-relay.ts'
import { KafkaWriter } from './kafka-writer.ts'

export type { KafkaOptions } from './kafka-options.ts'
export { KafkaRelay } from './kafka-relay.ts'
export { KafkaWriter } from './kafka-writer.ts'

/**
 * `kafka`: admission exactly as in `stream` (one Lua script reserves the stock and appends the request to
 * the coupon's Redis stream, which is the outbox); the relay carries the stream to Kafka and the consumer
 * group writes Postgres. The answer never waits for Kafka, so a broker outage only delays the rows.
 */
export function kafkaMode(ctx: IssuanceContext, options: KafkaOptions): ClosableMode {
  // Fail at startup on a missing broker list rather than at the first relay.
  resolveKafkaOptions(options)
  // Admission holds no Kafka client: the workers own them.
  return redisFirstMode(ctx, streamAdmission(ctx, 'kafka', STREAM_GROUPS.kafka))
}

/** The relay (Redis streams -> requests topic) and one consumer-group member (requests topic -> Postgres). */
export function kafkaWorkers(ctx: IssuanceContext, options: KafkaOptions): IssuanceWorker[] {
  return [new KafkaRelay(ctx, options), new KafkaWriter(ctx, options)]
}
