import type { Logger as PinoLogger } from 'pino'
import type { RedisClient } from '../../redis/client.ts'
import type { ReplicaAck } from '../../redis/scripts.ts'
import type { Db } from '../../storage/postgres.ts'

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
