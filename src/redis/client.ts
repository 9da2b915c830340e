import { Cluster, Redis } from 'ioredis'

export type RedisClient = Redis | Cluster

export interface RedisOptions {
  url: string
  clusterNodes: { host: string; port: number }[]
  /** Blocking readers (XREADGROUP BLOCK) need no command timeout and their own connection. */
  blocking?: boolean
  name?: string
}

/**
 * One Redis connection (or cluster client). No offline queue and a command timeout: when Redis is down a
 * command fails at once, so the request answers 503 instead of hanging or being replayed later.
 */
export function createRedis(options: RedisOptions): RedisClient {
  const common = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.blocking ? undefined : 2_000,
    connectionName: options.name ?? 'coupon-rush',
    lazyConnect: true,
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 2_000),
  }
  if (options.clusterNodes.length > 0) {
    return new Cluster(options.clusterNodes, {
      enableOfflineQueue: false,
      enableAutoPipelining: !options.blocking,
      redisOptions: common,
      lazyConnect: true,
    })
  }
  return new Redis(options.url, { ...common, enableAutoPipelining: !options.blocking })
}

/** Connects and waits until the client is ready; throws when Redis cannot be reached. */
export async function connectRedis(client: RedisClient): Promise<void> {
  if (client.status === 'ready') return
  await client.connect()
}

/** A second connection with the same settings, for subscribers and blocking reads. */
export function duplicateRedis(client: RedisClient, name: string): RedisClient {
  if (client instanceof Cluster) {
    return client.duplicate(undefined, {
      enableAutoPipelining: false,
      redisOptions: { ...client.options.redisOptions, commandTimeout: undefined, connectionName: name },
    })
  }
  return client.duplicate({ connectionName: name, commandTimeout: undefined, enableAutoPipelining: false })
}

type PipelineResults = [Error | null, unknown][]

/**
 * Runs a pipeline of one slot. A cluster client follows MOVED/ASK in a pipeline by itself only when every
 * reply was that redirection; a pipeline ending in WAIT (which is not redirected) would keep a stale slot map
 * after a failover, so the map is refreshed here. The redirected replies stay errors (nothing ran): callers
 * answer 503 or retry, and the next try goes to the new master.
 */
export async function execOnSlot(
  redis: RedisClient,
  pipeline: ReturnType<RedisClient['pipeline']>,
): Promise<PipelineResults> {
  const results: PipelineResults = (await pipeline.exec()) ?? []
  if (
    redis instanceof Cluster &&
    results.some(([error]) => error !== null && /^(MOVED|ASK) /.test(error.message))
  ) {
    redis.refreshSlotsCache()
  }
  return results
}

/**
 * The Redis server's clock in ms: the one clock of the service (issue windows, stream ids, waits), so no
 * process clock decides who is early or late.
 */
export async function redisNowMs(redis: RedisClient): Promise<number> {
  const [seconds, micros] = await redis.time()
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}
