import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import { type Config, redactUrl, StartupError } from '../../config/config.ts'
import { connectRedis, createRedis, duplicateRedis, type RedisClient } from '../../redis/client.ts'
import { readRedisDurability } from '../../redis/durability.ts'
import { preloadScripts } from '../../redis/scripts.ts'

declare module 'fastify' {
  interface FastifyInstance {
    redis: RedisClient
    /** A second connection in subscriber mode, for cache invalidation and decision events. */
    redisSubscriber: RedisClient
  }
}

/** Which setting names the Redis in use, and its value as an operator would recognise it. */
function redisTarget(config: Config): { variable: string; tried: string } {
  if (config.redisClusterNodes.length > 0) {
    const nodes = config.redisClusterNodes.map(({ host, port }) => `${host}:${port}`).join(',')
    return { variable: 'REDIS_CLUSTER_NODES', tried: `REDIS_CLUSTER_NODES=${nodes}` }
  }
  return { variable: 'REDIS_URL', tried: `REDIS_URL=${redactUrl(config.redisUrl)}` }
}

/** What one seed node of REDIS_CLUSTER_NODES is: a cluster node serving all slots, or why not. */
async function probeSeed(host: string, port: number): Promise<string | undefined> {
  const node = new Redis({
    host,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 2_000,
    commandTimeout: 2_000,
  })
  let lastError: Error | undefined
  node.on('error', (error: Error) => {
    lastError = error
  })
  try {
    await node.connect()
    const info = String(await node.call('CLUSTER', 'INFO'))
    const state = /cluster_state:(\w+)/.exec(info)?.[1]
    return state === 'ok' ? undefined : `${host}:${port} reports cluster_state:${state ?? 'unknown'}`
  } catch (error) {
    const message = lastError?.message ?? (error instanceof Error ? error.message : String(error))
    if (/cluster support disabled/i.test(message)) return `${host}:${port} is not in cluster mode`
    return `${host}:${port} does not answer (${message})`
  } finally {
    node.disconnect()
  }
}

/**
 * Checks every seed node before the cluster client starts (it would only say "Failed to refresh slots
 * cache."): a seed that is a plain Redis, or a cluster not serving every slot, is a setting to fix; seeds
 * that are down are tolerated while one answers, as after a failover.
 */
async function checkClusterSeeds(config: Config): Promise<void> {
  const problems = await Promise.all(config.redisClusterNodes.map(({ host, port }) => probeSeed(host, port)))
  const { tried } = redisTarget(config)
  const fatal = problems.find((problem) => problem !== undefined && !problem.includes('does not answer'))
  if (fatal !== undefined)
    throw new StartupError('REDIS_CLUSTER_NODES', `Redis Cluster at ${tried}: ${fatal}`)
  if (problems.every((problem) => problem !== undefined)) {
    throw new StartupError(
      'REDIS_CLUSTER_NODES',
      `Redis Cluster at ${tried}: no node answers (${problems.join('; ')})`,
    )
  }
}

/** Connects, or fails with one line naming the setting and the reason (not ioredis' "Connection is closed."). */
async function connectOrExplain(client: RedisClient, config: Config): Promise<void> {
  let lastError: Error | undefined
  const remember = (error: Error) => {
    lastError = error
  }
  client.on('error', remember)
  try {
    await connectRedis(client)
  } catch (error) {
    client.disconnect()
    const { variable, tried } = redisTarget(config)
    const why = lastError?.message ?? (error instanceof Error ? error.message : String(error))
    throw new StartupError(variable, `Redis at ${tried} does not answer (${why})`)
  } finally {
    client.off('error', remember)
  }
}

/**
 * Says at startup what a Redis crash would lose: one warning line when the Redis keeps nothing and has no
 * replica (or the loss cannot be told), a refusal to start with REDIS_DURABILITY=required.
 */
async function checkDurability(log: FastifyBaseLogger, redis: RedisClient, config: Config): Promise<void> {
  if (config.redisDurability === 'ignore') return
  const durability = await readRedisDurability(redis)
  if (durability.verdict === 'durable' || durability.verdict === 'replicated') return
  const { tried } = redisTarget(config)
  if (config.redisDurability === 'required') {
    throw new StartupError(
      'REDIS_DURABILITY',
      `REDIS_DURABILITY=required but Redis at ${tried} is not durable (${durability.verdict}): ${durability.detail}`,
    )
  }
  log.warn(
    { redisDurability: durability },
    `Redis at ${tried} is not durable (${durability.verdict}): ${durability.detail} REDIS_DURABILITY=required refuses to start on such a Redis, =ignore silences this.`,
  )
}

/** The Redis command client (auto-pipelined) and a subscriber connection, both closed with the server. */
export default fp<{ config: Config; name?: string }>(
  async (app, { config, name = 'coupon-rush-api' }) => {
    if (config.redisClusterNodes.length > 0) await checkClusterSeeds(config)
    const redis = createRedis({ url: config.redisUrl, clusterNodes: config.redisClusterNodes, name })
    await connectOrExplain(redis, config)
    redis.on('error', (error) => app.log.debug({ err: error }, 'redis connection error'))
    try {
      await checkDurability(app.log, redis, config)
      await preloadScripts(redis)
    } catch (error) {
      redis.disconnect()
      throw error
    }
    const subscriber = duplicateRedis(redis, `${name}-sub`)
    subscriber.on('error', (error) => app.log.debug({ err: error }, 'redis subscriber error'))
    await connectRedis(subscriber)
    app.decorate<RedisClient>('redis', redis)
    app.decorate<RedisClient>('redisSubscriber', subscriber)
    app.addHook('onClose', async () => {
      subscriber.disconnect()
      await redis.quit().catch(() => redis.disconnect())
    })
  },
  { name: 'redis' },
)
