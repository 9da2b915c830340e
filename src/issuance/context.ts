import type { Logger as PinoLogger } from 'pino'
import type { RedisClient } from '../redis/client.ts'
import { channels } from '../redis/keys.ts'
import type { ReplicaAck } from '../redis/scripts.ts'
import type { Db } from '../storage/postgres.ts'

/** The log calls the issuance code makes (satisfied by pino and by Fastify's logger). */
export type Logger = Pick<PinoLogger, 'debug' | 'info' | 'warn' | 'error'>

/** What every mode and worker is given (clients are passed in, never imported). */
export interface IssuanceContext {
  redis: RedisClient
  db: Db
  redisPrefix: string
  logger: Logger
  /**
   * REDIS_REPLICA_ACK: admissions are acknowledged, and admitted requests written on, only once this many
   * replicas have them, so a failover cannot lose what a user was told (undefined: no wait).
   */
  replicaAck?: ReplicaAck
}

/**
 * Announces decided requests to every API process (they push them to users over SSE), compactly: the coupon
 * and the flat `[userId, record, ...]` pairs the Redis script took. A process decodes only the users it has
 * an SSE connection for (see DecisionHub).
 */
export async function publishDecisions(
  ctx: IssuanceContext,
  couponId: number,
  pairs: string[],
): Promise<void> {
  if (pairs.length === 0) return
  const message: DecisionMessage = { couponId, pairs }
  await ctx.redis.publish(channels(ctx.redisPrefix).decisions, JSON.stringify(message))
}

export interface DecisionMessage {
  couponId: number
  pairs: string[]
}
