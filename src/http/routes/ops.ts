import { readFile } from 'node:fs/promises'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AppError } from '../../domain/errors.ts'

const DASHBOARD = new URL('../dashboard.html', import.meta.url)

export const opsRoutes: FastifyPluginAsyncTypebox = async (app) => {
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
        summary: 'Redis and Postgres are reachable',
        response: {
          200: Type.Object({ status: Type.Literal('ready'), redis: Type.String(), postgres: Type.String() }),
        },
      },
    },
    async () => {
      const [redis, postgres] = await Promise.allSettled([app.redis.ping(), app.db.query('SELECT 1')])
      const down = [
        redis.status === 'rejected' && 'Redis',
        postgres.status === 'rejected' && 'Postgres',
      ].filter(Boolean)
      if (down.length > 0)
        throw new AppError('UNAVAILABLE', `${down.join(' and ')} unreachable`, { retryAfterSeconds: 1 })
      return { status: 'ready' as const, redis: 'ok', postgres: 'ok' }
    },
  )

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  const page = await readFile(DASHBOARD, 'utf8')
  app.get('/', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(page),
  )
}
