import fp from 'fastify-plugin'
import type { Config } from '../../config/config.ts'
import { createPool, type Db } from '../../storage/postgres.ts'

declare module 'fastify' {
  interface FastifyInstance {
    db: Db
  }
}

/** The Postgres pool, closed with the server. Migrations run before the server starts (see cli.ts). */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const db = createPool({
      databaseUrl: config.databaseUrl,
      schema: config.databaseSchema,
      max: config.databasePoolSize,
    })
    app.decorate('db', db)
    app.addHook('onClose', () => db.end())
  },
  { name: 'postgres' },
)
