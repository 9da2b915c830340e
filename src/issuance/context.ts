import type { Logger as PinoLogger } from 'pino'
import type { Issuance } from '../domain/coupon.ts'
import type { RedisClient } from '../redis/client.ts'
import { channels } from '../redis/keys.ts'
import type { Db } from '../storage/postgres.ts'

/** The log calls the issuance code makes (satisfied by pino and by Fastify's logger). */
export type Logger = Pick<PinoLogger, 'debug' | 'info' | 'warn' | 'error'>

/** What every mode and worker is given (clients are passed in, never imported). */
export interface IssuanceContext {
  redis: RedisClient
  db: Db
  redisPrefix: string
  logger: Logger
}

/** Announces decided requests to every API process (they push them to users over SSE). */
export async function publishDecisions(ctx: IssuanceContext, decisions: Issuance[]): Promise<void> {
  if (decisions.length === 0) return
  await ctx.redis.publish(channels(ctx.redisPrefix).decisions, JSON.stringify(decisions))
}
