import Fastify, { type FastifyInstance } from 'fastify'
import type { Config } from '../config/config.ts'
import { loggerOptions } from '../logging/logger.ts'
import postgres from './plugins/postgres.ts'
import redis from './plugins/redis.ts'
import workers from './plugins/workers.ts'

/**
 * The `worker` process: the server's own Redis, Postgres and workers plugins, without the issuance service,
 * the routes or a listener. `ready()` starts the workers, `close()` stops them and closes the clients.
 */
export async function buildWorker({ config }: { config: Config }): Promise<FastifyInstance> {
  const app = Fastify({ logger: loggerOptions(config) })
  await app.register(postgres, { config })
  await app.register(redis, { config, name: 'coupon-rush-worker' })
  await app.register(workers, { config })
  return app
}
