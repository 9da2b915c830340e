import fp from 'fastify-plugin'
import type { Config } from '../../config/config.ts'
import { createWorkers, issuanceContext } from '../../issuance/service/modes.ts'

/**
 * The background workers of every enabled mode (stream writers, queue scheduler, Kafka relay and consumers):
 * started when the app is ready, stopped before its clients close. `serve` registers it unless
 * RUN_WORKERS=false; `worker` is this plugin with Redis and Postgres and nothing else.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const ctx = issuanceContext({ redis: app.redis, db: app.db, logger: app.log }, config)
    const workers = createWorkers(ctx, config)
    app.addHook('onReady', async () => {
      for (const worker of workers) await worker.start()
      app.log.info({ workers: workers.map((worker) => worker.name) }, 'workers running')
    })
    app.addHook('preClose', async () => {
      await Promise.all(workers.map((worker) => worker.stop()))
    })
  },
  { name: 'workers', dependencies: ['postgres', 'redis'] },
)
