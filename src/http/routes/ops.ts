import { readFile } from 'node:fs/promises'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Gauge } from 'prom-client'
import { Type } from 'typebox'
import { AppError } from '../../domain/errors.ts'
import { DURABILITY_VERDICTS, RedisDurabilitySchema, readRedisDurability } from '../../redis/durability.ts'
import { ping } from '../../storage/postgres.ts'

/** Open against the cap: HTTP_MAX_CONNECTIONS, SSE_MAX_STREAMS. */
const Budget = Type.Object({ open: Type.Integer(), limit: Type.Integer() })

const DASHBOARD = new URL('../dashboard.html', import.meta.url)

export const opsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Read at each scrape: a Redis reconfigured (or failed over) at run time shows at once.
  new Gauge({
    name: 'coupon_redis_durability',
    help: 'What the Redis in use keeps on a crash: 1 for the current verdict (durable, replicated, volatile, unknown) and appendfsync policy',
    labelNames: ['verdict', 'appendfsync'] as const,
    registers: [app.metrics.registry],
    async collect() {
      const durability = await readRedisDurability(app.redis)
      this.reset()
      for (const verdict of DURABILITY_VERDICTS) {
        this.set(
          { verdict, appendfsync: durability.appendfsync ?? 'unknown' },
          verdict === durability.verdict ? 1 : 0,
        )
      }
    },
  })

  app.get(
    '/healthz',
    {
      schema: {
        tags: ['ops'],
        summary: 'The process is up',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['ops'],
        summary: 'Redis and Postgres are reachable; what a Redis crash would lose',
        response: {
          200: Type.Object({
            status: Type.Literal('ready'),
            redis: Type.String(),
            postgres: Type.String(),
            redisDurability: RedisDurabilitySchema,
            connections: Budget,
            eventStreams: Budget,
          }),
        },
      },
    },
    async () => {
      const [redis, postgres] = await Promise.allSettled([app.redis.ping(), ping(app.db)])
      const down = [
        redis.status === 'rejected' && 'Redis',
        postgres.status === 'rejected' && 'Postgres',
      ].filter(Boolean)
      if (down.length > 0)
        throw new AppError('UNAVAILABLE', `${down.join(' and ')} unreachable`, { retryAfterSeconds: 1 })
      const redisDurability = await readRedisDurability(app.redis)
      return {
        status: 'ready' as const,
        redis: 'ok',
        postgres: 'ok',
        redisDurability,
        connections: { open: app.connections.open, limit: app.connections.limit },
        eventStreams: { open: app.eventStreams.open, limit: app.eventStreams.limits.maxTotal },
      }
    },
  )

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  const page = await readFile(DASHBOARD, 'utf8')
  app.get('/', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(page),
  )
}
