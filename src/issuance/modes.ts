import type { Config } from '../config/config.ts'
import type { IssuanceContext } from './context.ts'
import type { IssuanceMode, IssuanceWorker } from './mode.ts'
import { queueMode, queueScheduler } from './queue/queue-mode.ts'
import { streamMode, streamWriters } from './stream/stream-mode.ts'
import { syncMode } from './sync/sync-mode.ts'

/** Every issuance mode this process can serve (kafka only when KAFKA_BROKERS is set). */
export function createModes(ctx: IssuanceContext, config: Config): IssuanceMode[] {
  return [streamMode(ctx), queueMode(ctx), syncMode(ctx, { leaseMs: config.syncLockLeaseMs })]
}

/** The background workers of every enabled mode (run by `serve` by default, and by `worker`). */
export function createWorkers(ctx: IssuanceContext, config: Config): IssuanceWorker[] {
  return [streamWriters(ctx, config.streamDrain), queueScheduler(ctx, { cron: config.queueDrainCron })]
}
