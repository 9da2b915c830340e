import fp from 'fastify-plugin'
import type { Config } from '../../config/config.ts'
import { connectRedis, createRedis, duplicateRedis, type RedisClient } from '../../redis/client.ts'
import { preloadScripts } from '../../redis/scripts.ts'

declare module 'fastify' {
  interface FastifyInstance {
    redis: RedisClient
    /** A second connection in subscriber mode, for cache invalidation and decision events. */
    redisSubscriber: RedisClient
  }
}

/** The Redis command client (auto-pipelined) and a subscriber connection, both closed with the server. */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const redis = createRedis({
      url: config.redisUrl,
      clusterNodes: config.redisClusterNodes,
      name: 'coupon-rush-api',
    })
    redis.on('error', (error) => app.log.debug({ err: error }, 'redis connection error'))
    await connectRedis(redis)
    await preloadScripts(redis)
    const subscriber = duplicateRedis(redis, 'coupon-rush-sub')
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
