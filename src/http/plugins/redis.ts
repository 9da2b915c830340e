import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
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
