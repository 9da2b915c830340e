import { randomBytes } from 'node:crypto'
import { CronPattern } from 'croner'

/** The whole typed configuration of one process. Only `loadConfig` reads the environment. */
export interface Config {
  port: number
  host: string
  redisUrl: string
  /** Set when Redis runs as a cluster: `host:port` seed nodes. */
  redisClusterNodes: { host: string; port: number }[]
  databaseUrl: string
  /** Postgres schema holding the tables (tests run one schema each). */
  databaseSchema: string
  /** Set when the `kafka` mode is enabled. */
  kafkaBrokers: string[]
  jwtSecret: string
  adminToken: string
  /** True when `adminToken` was generated here, so the server logs it once. */
  adminTokenGenerated: boolean
  redisPrefix: string
  queueDrainCron: string
  logLevel: LogLevel
  /** Requests per user per window on the issuance endpoint. */
  rateLimitPerUser: { max: number; windowMs: number }
  /** Stream writers and the Kafka relay: batch size, take-over idle time, tries before dead-lettering. */
  streamDrain: { batchSize: number; reclaimIdleMs: number; maxDeliveries: number }
  /** Lease of the `sync` mode's fair lock: a dead holder blocks a coupon for at most this long. */
  syncLockLeaseMs: number
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A configuration error names the variable, so startup can stop with one clear line. */
export class ConfigError extends Error {
  readonly variable: string
  constructor(variable: string, problem: string) {
    super(`invalid configuration: ${variable} ${problem}`)
    this.variable = variable
  }
}

type Env = Record<string, string | undefined>

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === '' ? undefined : value
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name)
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`)
  const value = Number(raw)
  if (value < min || value > max)
    throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const raw = read(env, name) ?? fallback
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new ConfigError(name, `must be a URL, got "${raw}"`)
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${parsed.protocol}"`)
  }
  return raw
}

function hostPorts(env: Env, name: string): { host: string; port: number }[] {
  const raw = read(env, name)
  if (raw === undefined) return []
  return raw.split(',').map((item) => {
    const match = /^\s*([^\s:]+|\[[^\]]+\]):(\d{1,5})\s*$/.exec(item)
    const port = Number(match?.[2])
    if (!match?.[1] || port < 1 || port > 65535) {
      throw new ConfigError(name, `must be a comma list of host:port, got "${item.trim()}"`)
    }
    return { host: match[1].replace(/^\[|\]$/g, ''), port }
  })
}

function identifier(env: Env, name: string, fallback: string): string {
  const value = read(env, name) ?? fallback
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(value))
    throw new ConfigError(name, `must be a lower-case SQL identifier, got "${value}"`)
  return value
}

function secret(env: Env, name: string, minLength: number): string | undefined {
  const value = read(env, name)
  if (value !== undefined && value.length < minLength) {
    throw new ConfigError(name, `must be at least ${minLength} characters`)
  }
  return value
}

/** Validates the environment once at startup; throws `ConfigError` naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const host = read(env, 'HOST') ?? '127.0.0.1'
  const redisPrefix = read(env, 'REDIS_PREFIX') ?? 'cr:'
  if (!/^[A-Za-z0-9:_.-]{1,32}$/.test(redisPrefix)) {
    throw new ConfigError(
      'REDIS_PREFIX',
      'must be 1-32 characters of A-Za-z0-9:_.- (no braces: they are hash tags)',
    )
  }
  const queueDrainCron = read(env, 'QUEUE_DRAIN_CRON') ?? '* * * * * *'
  try {
    new CronPattern(queueDrainCron)
  } catch (error) {
    throw new ConfigError('QUEUE_DRAIN_CRON', `is not a cron pattern: ${(error as Error).message}`)
  }
  const logLevel = (read(env, 'LOG_LEVEL') ?? 'info') as LogLevel
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`)
  const kafkaBrokers = hostPorts(env, 'KAFKA_BROKERS').map(({ host, port }) => `${host}:${port}`)
  const adminToken = secret(env, 'ADMIN_TOKEN', 16)
  return {
    port: integer(env, 'PORT', 3000, 0, 65535),
    host,
    redisUrl: url(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisClusterNodes: hostPorts(env, 'REDIS_CLUSTER_NODES'),
    databaseUrl: url(env, 'DATABASE_URL', 'postgres://127.0.0.1:5432/coupon_rush', [
      'postgres:',
      'postgresql:',
    ]),
    databaseSchema: identifier(env, 'DATABASE_SCHEMA', 'public'),
    kafkaBrokers,
    jwtSecret: secret(env, 'JWT_SECRET', 32) ?? randomBytes(32).toString('base64url'),
    adminToken: adminToken ?? randomBytes(24).toString('base64url'),
    adminTokenGenerated: adminToken === undefined,
    redisPrefix,
    queueDrainCron,
    logLevel,
    rateLimitPerUser: {
      max: integer(env, 'RATE_LIMIT_PER_USER', 20, 1, 1_000_000),
      windowMs: integer(env, 'RATE_LIMIT_WINDOW_MS', 10_000, 100, 3_600_000),
    },
    streamDrain: {
      batchSize: integer(env, 'STREAM_BATCH_SIZE', 2_000, 1, 100_000),
      reclaimIdleMs: integer(env, 'STREAM_RECLAIM_IDLE_MS', 30_000, 100, 3_600_000),
      maxDeliveries: integer(env, 'STREAM_MAX_DELIVERIES', 5, 1, 1_000),
    },
    syncLockLeaseMs: integer(env, 'SYNC_LOCK_LEASE_MS', 5_000, 100, 600_000),
  }
}
