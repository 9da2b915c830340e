import fp from 'fastify-plugin'
import { Counter } from 'prom-client'
import type { Config } from '../../config/config.ts'
import type { IssuanceContext } from '../../issuance/core/context.ts'
import { DecisionHub } from '../../issuance/core/decision-hub.ts'
import { IssuanceService } from '../../issuance/service/issuance-service.ts'
import { createModes, issuanceContext } from '../../issuance/service/modes.ts'
import { channels } from '../../redis/keys.ts'
import fairness from './fairness.ts'

declare module 'fastify' {
  interface FastifyInstance {
    issuance: IssuanceService
    issuanceContext: IssuanceContext
    decisions: DecisionHub
  }
}

/**
 * Wires the issuance service (modes behind one interface, coupon cache) and the decision hub to this
 * process's clients and subscriber; the workers are the `workers` plugin.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const ctx = issuanceContext({ redis: app.redis, db: app.db, logger: app.log }, config)
    const service = new IssuanceService(ctx, createModes(ctx, config))
    const hub = new DecisionHub()
    const names = channels(config.redisPrefix)
    app.redisSubscriber.on('message', (channel: string, message: string) => {
      if (channel === names.couponChanged) service.forget(Number(message))
      else if (channel === names.decisions) hub.dispatch(message)
    })
    await app.redisSubscriber.subscribe(names.couponChanged, names.decisions)
    let refusalsReported = 0
    new Counter({
      name: 'coupon_sold_out_from_memory_total',
      help: 'Requests refused as sold out from memory (the coupon was known sold out), without a Redis call',
      registers: [app.metrics.registry],
      collect() {
        this.inc(service.refusedFromMemory - refusalsReported)
        refusalsReported = service.refusedFromMemory
      },
    })
    app.decorate('issuance', service)
    app.decorate('issuanceContext', ctx)
    app.decorate('decisions', hub)
    // Receipts, order logs, waits and their public routes (issue 19), built on the service above.
    await app.register(fairness, { config })

    app.addHook('preClose', async () => {
      await service.close()
    })
  },
  { name: 'issuance', dependencies: ['postgres', 'redis', 'metrics'] },
)
