import { randomBytes } from 'node:crypto'
import { CronPattern } from 'croner'
import { type StaticDecode, Type } from 'typebox'
import { Value } from 'typebox/value'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/**
 * What to do when the Redis in use keeps nothing on disk and has no replica (a crash would lose accepted
 * admissions): log one warning line (`warn`), refuse to start (`required`), or say nothing (`ignore`).
 */
const REDIS_DURABILITY_POLICIES = ['warn', 'required', 'ignore'] as const
export type RedisDurabilityPolicy = (typeof REDIS_DURABILITY_POLICIES)[number]

// Each variable is a string schema (the environment only holds strings) whose refinements carry the one-line
// message naming what is wrong, decoded to its typed value.

function oneOf<const T extends readonly string[]>(values: T, fallback: T[number], description: string) {
  return Type.Decode(
    Type.Refine(
      Type.String({ default: fallback, description }),
      (value) => values.includes(value),
      () => `must be one of ${values.join(', ')}`,
    ),
    (value): T[number] => values.find((item) => item === value) ?? fallback,
  )
}

function integer(fallback: number, min: number, max: number, description: string) {
  return Type.Decode(
    Type.Refine(
      Type.Refine(
        Type.String({ default: String(fallback), description }),
        (value) => /^\d+$/.test(value),
        (value) => `must be a whole number, got "${value}"`,
      ),
      (value) => !/^\d+$/.test(value) || (Number(value) >= min && Number(value) <= max),
      (value) => `must be between ${min} and ${max}, got ${Number(value)}`,
    ),
    (value) => Number(value),
  )
}

function protocolOf(value: string): string | undefined {
  try {
    return new URL(value).protocol
  } catch {
    return undefined
  }
}

function url(fallback: string, protocols: string[], description: string) {
  return Type.Refine(
    Type.Refine(
      Type.String({ default: fallback, description }),
      (value) => protocolOf(value) !== undefined,
      (value) => `must be a URL, got "${value}"`,
    ),
    (value) => {
      const protocol = protocolOf(value)
      return protocol === undefined || protocols.includes(protocol)
    },
    (value) => `must use ${protocols.join(' or ')}, got "${protocolOf(value)}"`,
  )
}

const HOST_PORT = /^\s*([^\s:]+|\[[^\]]+\]):(\d{1,5})\s*$/

function validHostPort(item: string): boolean {
  const port = Number(HOST_PORT.exec(item)?.[2])
  return port >= 1 && port <= 65535
}

function hostPorts(description: string) {
  return Type.Optional(
    Type.Decode(
      Type.Refine(
        Type.String({ description }),
        (value) => value.split(',').every(validHostPort),
        (value) =>
          `must be a comma list of host:port, got "${value
            .split(',')
            .find((item) => !validHostPort(item))
            ?.trim()}"`,
      ),
      (value) =>
        value.split(',').map((item) => {
          const [, host = '', port] = HOST_PORT.exec(item) ?? []
          return { host: host.replace(/^\[|\]$/g, ''), port: Number(port) }
        }),
    ),
  )
}

function secret(minLength: number, description: string) {
  return Type.Optional(
    Type.Refine(
      Type.String({ description }),
      (value) => value.length >= minLength,
      () => `must be at least ${minLength} characters`,
    ),
  )
}

/** Why croner rejects a pattern, or undefined when it takes it. */
function cronProblem(value: string): string | undefined {
  try {
    new CronPattern(value)
    return undefined
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

function pattern(regex: RegExp, fallback: string, problem: string, description: string) {
  return Type.Refine(
    Type.String({ default: fallback, description }),
    (value) => regex.test(value),
    (value) => problem.replace('%s', value),
  )
}

/**
 * The environment a Coupon Rush process reads: every variable, its default and its check, in one schema.
 * README's Configuration table lists the same variables (a test keeps them in step).
 */
export const EnvironmentSchema = Type.Object({
  PORT: integer(3000, 0, 65535, 'HTTP port'),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1, description: 'HTTP listen address' }),
  REDIS_URL: url('redis://127.0.0.1:6390', ['redis:', 'rediss:'], 'Redis (the project one by default)'),
  REDIS_CLUSTER_NODES: hostPorts('Redis Cluster seed nodes instead of REDIS_URL'),
  REDIS_DURABILITY: oneOf(
    REDIS_DURABILITY_POLICIES,
    'warn',
    'a Redis without persistence or replica: warn, required (refuse to start) or ignore',
  ),
  REDIS_REPLICA_ACK: Type.Decode(
    Type.Refine(
      Type.String({
        default: 'none',
        description: 'admissions wait for this many replicas (WAIT) before they are acknowledged',
      }),
      (value) => value === 'none' || /^[1-9]$/.test(value),
      (value) => `must be none or a number of replicas from 1 to 9, got "${value}"`,
    ),
    (value) => (value === 'none' ? 0 : Number(value)),
  ),
  REDIS_REPLICA_ACK_TIMEOUT_MS: integer(
    500,
    1,
    1_500,
    'longest wait for the replicas; then 503 (below the 2 s Redis command timeout)',
  ),
  DATABASE_URL: url(
    'postgres://127.0.0.1:5432/coupon_rush',
    ['postgres:', 'postgresql:'],
    'Postgres database (created if missing)',
  ),
  DATABASE_SCHEMA: pattern(
    /^[a-z_][a-z0-9_]{0,62}$/,
    'public',
    'must be a lower-case SQL identifier, got "%s"',
    'schema of the tables',
  ),
  KAFKA_BROKERS: hostPorts('Kafka bootstrap brokers; enables the kafka mode'),
  JWT_SECRET: secret(32, 'HS256 key for user tokens'),
  ADMIN_TOKEN: secret(16, 'admin bearer token'),
  REDIS_PREFIX: pattern(
    /^[A-Za-z0-9:_.-]{1,32}$/,
    'cr:',
    'must be 1-32 characters of A-Za-z0-9:_.- (no braces: they are hash tags)',
    'prefix of every Redis key',
  ),
  QUEUE_DRAIN_CRON: Type.Refine(
    Type.String({ default: '* * * * * *', description: 'schedule of the queue mode drain' }),
    (value) => cronProblem(value) === undefined,
    (value) => `is not a cron pattern: ${cronProblem(value)}`,
  ),
  LOG_LEVEL: oneOf(LOG_LEVELS, 'info', 'pino log level'),
  RATE_LIMIT_PER_USER: integer(20, 1, 1_000_000, 'issuance requests per user per window'),
  RATE_LIMIT_WINDOW_MS: integer(10_000, 100, 3_600_000, 'rate limit window'),
  STREAM_BATCH_SIZE: integer(2_000, 1, 100_000, 'stream writer batch size (not the Kafka relay)'),
  STREAM_RECLAIM_IDLE_MS: integer(30_000, 100, 3_600_000, 'idle time before a pending entry is taken over'),
  STREAM_MAX_DELIVERIES: integer(5, 1, 1_000, 'tries before an entry is dead-lettered'),
  SYNC_LOCK_LEASE_MS: integer(5_000, 100, 600_000, 'lease of the sync fair lock'),
  RUN_WORKERS: Type.Decode(
    Type.Refine(
      Type.String({ default: 'true', description: '`serve` also runs the workers' }),
      (value) => value === 'true' || value === 'false',
      (value) => `must be true or false, got "${value}"`,
    ),
    (value) => value === 'true',
  ),
})

export type Environment = StaticDecode<typeof EnvironmentSchema>

/** The whole typed configuration of one process. Only `loadConfig` reads the environment. */
export interface Config {
  port: number
  host: string
  redisUrl: string
  /** Set when Redis runs as a cluster: `host:port` seed nodes. */
  redisClusterNodes: { host: string; port: number }[]
  redisDurability: RedisDurabilityPolicy
  /**
   * REDIS_REPLICA_ACK: an admission is acknowledged only once this many replicas have it (`WAIT`), else the
   * answer is 503; undefined when admissions do not wait (replication is asynchronous then).
   */
  redisReplicaAck: { replicas: number; timeoutMs: number } | undefined
  databaseUrl: string
  /** Postgres schema holding the tables (tests run one schema each). */
  databaseSchema: string
  /** Set when the `kafka` mode is enabled. */
  kafkaBrokers: string[]
  jwtSecret: string
  /** True when `jwtSecret` was generated here: tokens signed elsewhere cannot match it. */
  jwtSecretGenerated: boolean
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
  /** `serve` runs the background workers too (RUN_WORKERS). */
  runWorkers: boolean
}

/** A configuration error names the variable, so startup can stop with one clear line. */
export class ConfigError extends Error {
  readonly variable: string
  constructor(variable: string, problem: string) {
    super(`invalid configuration: ${variable} ${problem}`)
    this.variable = variable
  }
}

type Env = Record<string, string | undefined>

/** Validates the environment once at startup; throws `ConfigError` naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  // Only the schema's variables, as strings; unset or blank ones take their default.
  const raw: Record<string, string> = {}
  for (const name of Object.keys(EnvironmentSchema.properties)) {
    const value = env[name]?.trim()
    if (value !== undefined && value !== '') raw[name] = value
  }
  const withDefaults = Value.Default(EnvironmentSchema, raw)
  const [error] = Value.Errors(EnvironmentSchema, withDefaults)
  if (error !== undefined) throw new ConfigError(error.instancePath.slice(1), error.message)
  const vars: Environment = Value.Decode(EnvironmentSchema, withDefaults)
  return {
    port: vars.PORT,
    host: vars.HOST,
    redisUrl: vars.REDIS_URL,
    redisClusterNodes: vars.REDIS_CLUSTER_NODES ?? [],
    redisDurability: vars.REDIS_DURABILITY,
    redisReplicaAck:
      vars.REDIS_REPLICA_ACK === 0
        ? undefined
        : { replicas: vars.REDIS_REPLICA_ACK, timeoutMs: vars.REDIS_REPLICA_ACK_TIMEOUT_MS },
    databaseUrl: vars.DATABASE_URL,
    databaseSchema: vars.DATABASE_SCHEMA,
    kafkaBrokers: (vars.KAFKA_BROKERS ?? []).map(({ host, port }) => `${host}:${port}`),
    jwtSecret: vars.JWT_SECRET ?? randomBytes(32).toString('base64url'),
    jwtSecretGenerated: vars.JWT_SECRET === undefined,
    adminToken: vars.ADMIN_TOKEN ?? randomBytes(24).toString('base64url'),
    adminTokenGenerated: vars.ADMIN_TOKEN === undefined,
    redisPrefix: vars.REDIS_PREFIX,
    queueDrainCron: vars.QUEUE_DRAIN_CRON,
    logLevel: vars.LOG_LEVEL,
    rateLimitPerUser: { max: vars.RATE_LIMIT_PER_USER, windowMs: vars.RATE_LIMIT_WINDOW_MS },
    streamDrain: {
      batchSize: vars.STREAM_BATCH_SIZE,
      reclaimIdleMs: vars.STREAM_RECLAIM_IDLE_MS,
      maxDeliveries: vars.STREAM_MAX_DELIVERIES,
    },
    syncLockLeaseMs: vars.SYNC_LOCK_LEASE_MS,
    runWorkers: vars.RUN_WORKERS,
  }
}

/**
 * A startup failure the operator can fix by a setting (Redis or Postgres unreachable, port taken, a Redis
 * that keeps nothing with REDIS_DURABILITY=required): one line naming the variable and what was tried.
 */
export class StartupError extends Error {
  readonly variable: string
  constructor(variable: string, problem: string) {
    super(`cannot start: ${problem}`)
    this.variable = variable
  }
}

/** A URL for a log line: its password masked. */
export function redactUrl(value: string): string {
  try {
    const parsed = new URL(value)
    if (parsed.password === '') return value
    parsed.password = '***'
    return parsed.toString()
  } catch {
    return value
  }
}
