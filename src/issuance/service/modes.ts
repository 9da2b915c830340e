import type { Config } from '../../config/config.ts'
import type { IssueMode } from '../../domain/coupon.ts'
import type { IssuanceContext } from '../core/context.ts'
import type { ClosableMode, IssuanceWorker } from '../core/mode.ts'
import { PrequeueMover } from '../fairness/prequeue-mover.ts'
import { kafkaMode, kafkaWorkers } from '../kafka/kafka-mode.ts'
import { SaleReleaser } from '../plumbing/sale-release.ts'
import { queueMode, queueScheduler } from '../queue/queue-mode.ts'
import { streamMode, streamWriters } from '../stream/stream-mode.ts'
import { syncMode } from '../sync/sync-mode.ts'

/** How to enable a mode that a configuration may leave off (told to an admin who asks for it). */
export const ENABLED_BY: Partial<Record<IssueMode, string>> = { kafka: 'set KAFKA_BROKERS to enable it' }

/** Every issuance mode this process can serve (kafka only when KAFKA_BROKERS is set). */
export function createModes(ctx: IssuanceContext, config: Config): ClosableMode[] {
  const modes = [streamMode(ctx), queueMode(ctx), syncMode(ctx, { leaseMs: config.syncLockLeaseMs })]
  if (config.kafkaBrokers.length > 0) modes.push(kafkaMode(ctx, { brokers: config.kafkaBrokers }))
  return modes
}

/** The background workers of every enabled mode and the ended sales' release (run by `serve` by default, and by `worker`). */
export function createWorkers(ctx: IssuanceContext, config: Config): IssuanceWorker[] {
  const workers = [
    streamWriters(ctx, config.streamDrain),
    queueScheduler(ctx, { cron: config.queueDrainCron }),
    new PrequeueMover(ctx),
    new SaleReleaser(ctx, { afterMs: config.saleReleaseAfterMs }),
  ]
  // STREAM_* tune the stream writers only: the relay keeps its own drain settings (it retries in place and
  // keeps a coupon's admission order, so its take-over and dead-letter bounds differ; see kafka-relay.ts).
  if (config.kafkaBrokers.length > 0) workers.push(...kafkaWorkers(ctx, { brokers: config.kafkaBrokers }))
  return workers
}

/** The context every mode and worker of this process is given, from its clients and configuration. */
export function issuanceContext(
  clients: Pick<IssuanceContext, 'redis' | 'db' | 'logger'>,
  config: Pick<Config, 'redisPrefix' | 'redisReplicaAck'>,
): IssuanceContext {
  return { ...clients, redisPrefix: config.redisPrefix, replicaAck: config.redisReplicaAck }
}
