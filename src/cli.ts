import type { FastifyInstance } from 'fastify'
import { signUserToken } from './auth/tokens.ts'
import { isUserId, USER_ID_RULE } from './auth/user-id.ts'
import { type Config, ConfigError, loadConfig, redactUrl, StartupError } from './config/config.ts'
import { buildApp } from './http/app.ts'
import { buildWorker } from './http/worker-app.ts'
import { verifyCommand } from './issuance/fairness/verify-command.ts'
import { announceGeneratedAdminToken } from './logging/logger.ts'
import { migrate } from './storage/migrate.ts'
import { createPool, ensureDatabase } from './storage/postgres.ts'

const USAGE = `usage: coupon-rush <command>

commands:
  serve            run the HTTP API (and, unless RUN_WORKERS=false, the issuance workers)
  worker           run only the issuance workers (stream writers, queue scheduler, Kafka relay/consumers)
  migrate          create the database if missing and apply the SQL migrations
  token <userId>   print a user JWT signed with JWT_SECRET (valid 24 h), for trying the API by hand
  verify --receipt <file.json> --url <http://service>
                   check an issuance receipt against the service's key and the coupon's order log`

function reason(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return reason(error.errors[0])
  return error instanceof Error ? error.message : String(error)
}

async function prepareDatabase(config: Config): Promise<void> {
  try {
    await ensureDatabase(config.databaseUrl)
  } catch (error) {
    throw new StartupError(
      'DATABASE_URL',
      `Postgres at DATABASE_URL=${redactUrl(config.databaseUrl)} cannot be used (${reason(error)})`,
    )
  }
  const db = createPool({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, max: 1 })
  try {
    await migrate(db, config.databaseSchema)
  } finally {
    await db.end()
  }
}

function onShutdown(app: FastifyInstance): void {
  let closing = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (closing) return
      closing = true
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    })
  }
}

async function listen(app: FastifyInstance, config: Config): Promise<void> {
  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? error.code : undefined
    const where = `${config.host}:${config.port}`
    if (code === 'EADDRINUSE')
      throw new StartupError('PORT', `PORT=${config.port} is in use on ${where} (${reason(error)})`)
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
      throw new StartupError(
        'HOST',
        `HOST=${config.host} is not an address of this machine (${reason(error)})`,
      )
    if (code === 'EACCES')
      throw new StartupError('PORT', `PORT=${config.port} on ${where} is not allowed here (${reason(error)})`)
    throw error
  }
}

async function serve(config: Config): Promise<void> {
  await prepareDatabase(config)
  const app = await buildApp({ config })
  onShutdown(app)
  await listen(app, config)
  if (config.adminTokenGenerated) {
    announceGeneratedAdminToken(app.log, config)
  }
}

async function worker(config: Config): Promise<void> {
  await prepareDatabase(config)
  const app = await buildWorker({ config })
  onShutdown(app)
  await app.ready()
}

async function run(command: string, args: string[], config: Config): Promise<void> {
  switch (command) {
    case 'serve':
      return serve(config)
    case 'worker':
      return worker(config)
    case 'migrate':
      await prepareDatabase(config)
      console.log(`database migrated (schema ${config.databaseSchema})`)
      return
    case 'token': {
      const userId = args[0]
      if (!isUserId(userId)) {
        console.error(`token: give ${USER_ID_RULE}`)
        process.exit(2)
      }
      if (config.identityProvider !== undefined) {
        console.error('token: user tokens come from the identity provider (JWT_ISSUER / JWT_JWKS_URL) here')
        process.exit(2)
      }
      if (config.jwtSecretGenerated) {
        console.error('token: JWT_SECRET is not set; set it for both the server and this command')
        process.exit(2)
      }
      console.log(signUserToken(config.jwtSecret, userId, 86_400))
      return
    }
    case 'verify':
      process.exitCode = await verifyCommand(args)
      return
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`)
      process.exit(2)
  }
}

/** Runs one command; a bad setting (ConfigError, StartupError) ends the process with one line naming it. */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const [command, ...args] = argv
  if (command === undefined || command === 'help' || command === '--help') {
    console.log(USAGE)
    return
  }
  try {
    await run(command, args, loadConfig(env))
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message)
      process.exit(2)
    }
    if (error instanceof StartupError) {
      console.error(error.message)
      process.exit(1)
    }
    throw error
  }
}
