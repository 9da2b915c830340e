import pino from 'pino'
import { signUserToken } from './auth/tokens.ts'
import { type Config, ConfigError, loadConfig } from './config/config.ts'
import { buildApp } from './http/app.ts'
import { USER_ID_PATTERN } from './http/plugins/auth.ts'
import { createWorkers } from './issuance/modes.ts'
import { connectRedis, createRedis } from './redis/client.ts'
import { preloadScripts } from './redis/scripts.ts'
import { migrate } from './storage/migrate.ts'
import { createPool, ensureDatabase } from './storage/postgres.ts'

const USAGE = `usage: coupon-rush <command>

commands:
  serve            run the HTTP API (and, unless RUN_WORKERS=false, the issuance workers)
  worker           run only the issuance workers (stream writers, queue scheduler, Kafka relay/consumers)
  migrate          create the database if missing and apply the SQL migrations
  token <userId>   print a user JWT signed with JWT_SECRET (valid 24 h), for trying the API by hand`

async function prepareDatabase(config: Config): Promise<void> {
  await ensureDatabase(config.databaseUrl)
  const db = createPool({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, max: 1 })
  try {
    await migrate(db, config.databaseSchema)
  } finally {
    await db.end()
  }
}

function onShutdown(close: () => Promise<void>): void {
  let closing = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (closing) return
      closing = true
      close().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    })
  }
}

async function serve(config: Config, runWorkers: boolean): Promise<void> {
  await prepareDatabase(config)
  const app = await buildApp({ config, runWorkers })
  onShutdown(() => app.close())
  await app.listen({ port: config.port, host: config.host })
  if (config.adminTokenGenerated) {
    app.log.warn(`ADMIN_TOKEN was not set; generated admin token for this run: ${config.adminToken}`)
  }
}

async function worker(config: Config): Promise<void> {
  await prepareDatabase(config)
  const logger = pino({ level: config.logLevel })
  const db = createPool({ databaseUrl: config.databaseUrl, schema: config.databaseSchema })
  const redis = createRedis({
    url: config.redisUrl,
    clusterNodes: config.redisClusterNodes,
    name: 'coupon-rush-worker',
  })
  redis.on('error', (error) => logger.debug({ err: error }, 'redis connection error'))
  await connectRedis(redis)
  await preloadScripts(redis)
  const workers = createWorkers({ db, redis, redisPrefix: config.redisPrefix, logger }, config)
  for (const item of workers) await item.start()
  logger.info({ workers: workers.map((item) => item.name) }, 'workers running')
  onShutdown(async () => {
    await Promise.all(workers.map((item) => item.stop()))
    redis.disconnect()
    await db.end()
  })
}

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const [command, ...args] = argv
  if (command === undefined || command === 'help' || command === '--help') {
    console.log(USAGE)
    return
  }
  let config: Config
  try {
    config = loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message)
      process.exit(2)
    }
    throw error
  }
  switch (command) {
    case 'serve':
      return serve(config, env.RUN_WORKERS !== 'false')
    case 'worker':
      return worker(config)
    case 'migrate':
      await prepareDatabase(config)
      console.log(`database migrated (schema ${config.databaseSchema})`)
      return
    case 'token': {
      const userId = args[0]
      if (userId === undefined || !USER_ID_PATTERN.test(userId)) {
        console.error('token: give a user id of 1-64 characters A-Za-z0-9._:-')
        process.exit(2)
      }
      if (env.JWT_SECRET === undefined) {
        console.error('token: JWT_SECRET is not set; set it for both the server and this command')
        process.exit(2)
      }
      console.log(signUserToken(config.jwtSecret, userId, 86_400))
      return
    }
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`)
      process.exit(2)
  }
}
