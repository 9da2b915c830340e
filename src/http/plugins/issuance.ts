import fp from 'fastify-plugin'
import { Counter } from 'prom-client'
import type { Config } from '../../config/config.ts'
import type { Issuance } from '../../domain/coupon.ts'
import type { DecisionMessage, IssuanceContext } from '../../issuance/context.ts'
import { decodeRecord, toIssuance } from '../../issuance/coupon-store.ts'
import { createModes } from '../../issuance/modes.ts'
import { IssuanceService } from '../../issuance/service.ts'
import { channels } from '../../redis/keys.ts'

declare module 'fastify' {
  interface FastifyInstance {
    issuance: IssuanceService
    issuanceContext: IssuanceContext
    decisions: DecisionHub
  }
}

type Listener = (issuance: Issuance) => void

/** Fans decisions published by any worker out to the SSE connections of this process, by user. */
export class DecisionHub {
  private readonly listeners = new Map<string, Set<Listener>>()

  subscribe(userId: string, listener: Listener): () => void {
    let set = this.listeners.get(userId)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(userId, set)
    }
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0) this.listeners.delete(userId)
    }
  }

  /** A published decision message: parsed only if this process has SSE listeners, decoded only for them. */
  dispatch(message: string): void {
    if (this.listeners.size === 0) return
    const { couponId, pairs } = JSON.parse(message) as DecisionMessage
    for (let i = 0; i < pairs.length; i += 2) {
      const listeners = this.listeners.get(pairs[i]!)
      if (listeners === undefined) continue
      const issuance = toIssuance(couponId, pairs[i]!, decodeRecord(pairs[i + 1]!))
      for (const listener of listeners) listener(issuance)
    }
  }
}

/** The issuance service (modes behind one interface, coupon cache); the workers are the `workers` plugin. */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const ctx: IssuanceContext = {
      redis: app.redis,
      db: app.db,
      redisPrefix: config.redisPrefix,
      logger: app.log,
      replicaAck: config.redisReplicaAck,
    }
    const modes = createModes(ctx, config)
    const service = new IssuanceService(ctx, modes)
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

    app.addHook('preClose', async () => {
      await service.close()
    })
  },
  { name: 'issuance', dependencies: ['postgres', 'redis', 'metrics'] },
)
