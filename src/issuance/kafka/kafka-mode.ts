import type { IssuanceContext } from '../context.ts'
import { rebuildCouponState, stockOf } from '../coupon-state.ts'
import type { IssuanceMode, IssuanceWorker } from '../mode.ts'
import { admitToStream, streamStats, streamStatus } from '../stream/stream-admission.ts'
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
export function kafkaMode(
  ctx: IssuanceContext,
  options: KafkaOptions,
): IssuanceMode & { close(): Promise<void> } {
  // Fail at startup on a missing broker list rather than at the first relay.
  resolveKafkaOptions(options)
  return {
    mode: 'kafka',
    soldOutIsFinal: true,
    prepare: (coupon) => rebuildCouponState(ctx, coupon),
    request: (coupon, userId) => admitToStream(ctx, coupon, userId),
    status: (coupon, userId) => streamStatus(ctx, coupon, userId),
    stats: (coupon) => streamStats(ctx, coupon),
    remaining: (coupon) => stockOf(ctx, coupon),
    // Admission holds no Kafka client: the workers own them.
    close: async () => {},
  }
}

/** The relay (Redis streams -> requests topic) and one consumer-group member (requests topic -> Postgres). */
export function kafkaWorkers(ctx: IssuanceContext, options: KafkaOptions): IssuanceWorker[] {
  return [new KafkaRelay(ctx, options), new KafkaWriter(ctx, options)]
}
