import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
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

/** Log lines readable by a person (pino-pretty), JSON, or pretty only when stdout is a terminal (`auto`). */
const LOG_FORMATS = ['auto', 'pretty', 'json'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]

/** Which requests are logged: every one (`all`), those failing on the server side (`failures`), or `errors`. */
const REQUEST_LOGS = ['all', 'failures', 'errors'] as const
export type RequestLog = (typeof REQUEST_LOGS)[number]

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

function url(fallback: string | undefined, protocols: string[], description: string) {
  return Type.Refine(
    Type.Refine(
      Type.String(fallback === undefined ? { description } : { default: fallback, description }),
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

/** proxy-addr's names for address ranges (`loopback`: 127.0.0.1/8 and ::1, ...). */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal']

/** An address, a CIDR range (`10.0.0.0/8`, `fd00::/8`) or one of proxy-addr's range names. */
function validProxy(item: string): boolean {
  if (PROXY_RANGE_NAMES.includes(item)) return true
  const [address = '', bits, ...rest] = item.split('/')
  const family = isIP(address)
  if (family === 0 || rest.length > 0) return false
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128))
}

function proxyList(description: string) {
  return Type.Decode(
    Type.Refine(
      Type.String({ default: 'none', description }),
      (value) => value === 'none' || value.split(',').every((item) => validProxy(item.trim())),
      (value) =>
        `must be none or a comma list of addresses, CIDR ranges or ${PROXY_RANGE_NAMES.join('/')}, got "${value
          .split(',')
          .find((item) => !validProxy(item.trim()))
          ?.trim()}"`,
    ),
    (value) => (value === 'none' ? [] : value.split(',').map((item) => item.trim())),
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

/** Asymmetric signatures only: an identity provider's public keys can never be used as an HMAC secret. */
const IDP_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
] as const
export type IdpAlgorithm = (typeof IDP_ALGORITHMS)[number]

function algorithmList(fallback: string, description: string) {
  const unknown = (value: string) =>
    value.split(',').find((item) => !(IDP_ALGORITHMS as readonly string[]).includes(item.trim()))
  return Type.Decode(
    Type.Refine(
      Type.String({ default: fallback, description }),
      (value) => unknown(value) === undefined,
      (value) => `must be a comma list of ${IDP_ALGORITHMS.join(', ')}, got "${unknown(value)?.trim()}"`,
    ),
    (value) =>
      value.split(',').map((item) => IDP_ALGORITHMS.find((known) => known === item.trim()) ?? 'RS256'),
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
  DATABASE_POOL_SIZE: integer(20, 2, 1_000, 'Postgres connections per process (the API pool)'),
  SALE_RELEASE_AFTER_MS: integer(
    3_600_000,
    0,
    2_592_000_000,
    'how long after a sale ends (once drained) Redis keeps its state; then it is released to Postgres',
  ),
  KAFKA_BROKERS: hostPorts('Kafka bootstrap brokers; enables the kafka mode'),
  JWT_SECRET: secret(32, 'HS256 key for user tokens'),
  RECEIPT_SIGNING_KEY: secret(
    40,
    'Ed25519 private key signing issuance receipts: PEM, or base64 of its PKCS#8 DER',
  ),
  JWT_ISSUER: Type.Optional(
    url(undefined, ['https:', 'http:'], 'identity provider (OpenID discovery); expected `iss`'),
  ),
  JWT_JWKS_URL: Type.Optional(
    url(undefined, ['https:', 'http:'], "identity provider's JWKS (instead of discovery)"),
  ),
  JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1, description: 'expected `aud` of IdP tokens' })),
  JWT_ALGORITHMS: algorithmList('RS256,ES256,EdDSA', 'signature algorithms taken from the identity provider'),
  JWT_USER_CLAIM: pattern(
    /^[A-Za-z0-9_.:/-]{1,100}$/,
    'sub',
    'must be a claim name, got "%s"',
    'claim of IdP tokens holding the user id',
  ),
  JWT_KEYS_REFETCH_MIN_MS: integer(
    30_000,
    0,
    3_600_000,
    'least time between two JWKS fetches for unknown keys',
  ),
  JWT_KEYS_MAX_AGE_MS: integer(600_000, 1_000, 86_400_000, 'JWKS refreshed in the background after this'),
  JWT_VERIFIED_CACHE_SIZE: integer(10_000, 0, 10_000_000, 'verified user tokens remembered (0: off)'),
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
  LOG_FORMAT: oneOf(
    LOG_FORMATS,
    'auto',
    'pretty (readable), json, or auto: pretty when stdout is a terminal',
  ),
  LOG_REQUESTS: oneOf(
    REQUEST_LOGS,
    'failures',
    'request log: all, failures (5xx) or errors (unhandled only); never below LOG_LEVEL',
  ),
  METRICS_SALES_MAX: integer(20, 0, 1_000, 'most sales with their own series in /metrics'),
  METRICS_SALES_ENDED_WITHIN_MS: integer(
    3_600_000,
    0,
    604_800_000,
    'a sale keeps its series in /metrics this long after its issue window closed',
  ),
  RATE_LIMIT_PER_USER: integer(20, 1, 1_000_000, 'issuance requests per user per window'),
  RATE_LIMIT_WINDOW_MS: integer(10_000, 100, 3_600_000, 'rate limit window (whole seconds, rounded up)'),
  STATUS_LIMIT_PER_USER: integer(60, 1, 1_000_000, 'issuance status reads per user per window'),
  STATUS_LIMIT_WINDOW_MS: integer(10_000, 1_000, 3_600_000, 'status read limit window'),
  ADDRESS_LIMIT_PER_WINDOW: integer(300, 1, 100_000_000, 'requests per client address per window'),
  ADDRESS_LIMIT_WINDOW_MS: integer(10_000, 1_000, 3_600_000, 'client address limit window'),
  TRUST_PROXY: proxyList('proxies trusted to set X-Forwarded-For (none: the socket address)'),
  COUPON_MISS_TTL_MS: integer(2_000, 0, 60_000, 'how long an unknown coupon id is answered 404 from memory'),
  POW_HMAC_KEY: secret(32, 'HMAC key signing proof-of-work challenges (the same in every process)'),
  POW_CHALLENGE_TTL_MS: integer(60_000, 1_000, 3_600_000, 'how long a proof-of-work challenge can be used'),
  STREAM_BATCH_SIZE: integer(2_000, 1, 100_000, 'stream writer batch size (not the Kafka relay)'),
  STREAM_RECLAIM_IDLE_MS: integer(30_000, 100, 3_600_000, 'idle time before a pending entry is taken over'),
  STREAM_MAX_DELIVERIES: integer(5, 1, 1_000, 'tries before an entry is dead-lettered'),
  SYNC_LOCK_LEASE_MS: integer(5_000, 100, 600_000, 'lease of the sync fair lock'),
  HTTP_MAX_CONNECTIONS: integer(
    10_000,
    1,
    1_000_000,
    'open connections per process; beyond it a new one is answered 503 and closed',
  ),
  HTTP_REQUEST_TIMEOUT_MS: integer(10_000, 100, 600_000, 'a request body must arrive within this, else 408'),
  HTTP_HEADERS_TIMEOUT_MS: integer(5_000, 100, 600_000, 'request headers must arrive within this, else 408'),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: integer(
    72_000,
    100,
    600_000,
    'an idle keep-alive connection is closed after this',
  ),
  SSE_MAX_PER_USER: integer(4, 1, 1_000, "event streams per user; a new one closes the user's oldest"),
  SSE_MAX_STREAMS: integer(2_000, 1, 1_000_000, 'event streams per process; beyond it 503'),
  SSE_HEARTBEAT_MS: integer(15_000, 100, 600_000, 'comment written on each event stream this often'),
  SSE_MAX_AGE_MS: integer(
    600_000,
    1_000,
    86_400_000,
    'an event stream is closed after this (the client reconnects)',
  ),
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
  /** Ed25519 private key of the receipts (PEM or base64 PKCS#8); undefined: one is made per run. */
  receiptSigningKey: string | undefined
  /** Set when user tokens come from the shop's identity provider (JWT_ISSUER or JWT_JWKS_URL); else HS256. */
  identityProvider: IdentityProviderConfig | undefined
  /** Verified user tokens remembered until they expire, so a repeated token skips the signature check. */
  verifiedTokenCacheSize: number
  adminToken: string
  /** True when `adminToken` was generated here, so the server logs it once. */
  adminTokenGenerated: boolean
  redisPrefix: string
  queueDrainCron: string
  logLevel: LogLevel
  /** LOG_FORMAT: pretty lines, JSON, or pretty only on a terminal (decided in src/logging/). */
  logFormat: LogFormat
  /** LOG_REQUESTS: how much of the request log to keep (the process's own lines follow LOG_LEVEL). */
  requestLog: RequestLog
  /**
   * Per-sale series in /metrics (src/monitoring/): sales whose window is open or closed less than
   * `endedWithinMs` ago, the newest `maxSales` of them, so the label set stays bounded.
   */
  saleMetrics: { maxSales: number; endedWithinMs: number }
  /** Requests per user per window on the issuance endpoint, counted in Redis across processes. */
  rateLimitPerUser: RateLimit
  /** Reads of `GET /coupons/{id}/issuance` per user per window, counted in Redis. */
  statusLimitPerUser: RateLimit
  /** Requests of any kind per client address per window, counted in Redis. */
  addressLimit: RateLimit
  /**
   * TRUST_PROXY: addresses or CIDR ranges of the proxies whose X-Forwarded-For is believed (Fastify's
   * `trustProxy`); empty: the client address is the socket's.
   */
  trustProxy: string[]
  /** How long an unknown coupon id is answered 404 from memory (0: never). */
  couponMissTtlMs: number
  /**
   * Proof of work on coupons that ask for it: the HMAC key signing challenges (POW_HMAC_KEY, random per run
   * unless set: every process of a deployment needs the same) and how long a challenge can be used.
   */
  proofOfWork: { hmacKey: string; challengeTtlMs: number }
  /** Stream writers and the Kafka relay: batch size, take-over idle time, tries before dead-lettering. */
  streamDrain: { batchSize: number; reclaimIdleMs: number; maxDeliveries: number }
  /** DATABASE_POOL_SIZE: connections of this process's Postgres pool. */
  databasePoolSize: number
  /** SALE_RELEASE_AFTER_MS: an ended, drained sale's Redis state is released to Postgres this long after its end. */
  saleReleaseAfterMs: number
  /** Lease of the `sync` mode's fair lock: a dead holder blocks a coupon for at most this long. */
  syncLockLeaseMs: number
  /** `serve` runs the background workers too (RUN_WORKERS). */
  runWorkers: boolean
  /** The connection budget and timeouts of the HTTP server (HTTP_*). */
  http: HttpLimits
  /** Caps and timing of Server-Sent Events streams (SSE_*). */
  eventStreams: EventStreamLimits
}

export interface HttpLimits {
  maxConnections: number
  /** HTTP_MAX_CONNECTIONS was set: a limit that does not fit the descriptors refuses to start, not lowers. */
  maxConnectionsSet: boolean
  requestTimeoutMs: number
  headersTimeoutMs: number
  keepAliveTimeoutMs: number
}

export interface EventStreamLimits {
  maxPerUser: number
  maxTotal: number
  heartbeatMs: number
  maxAgeMs: number
}

export interface RateLimit {
  max: number
  windowMs: number
}

export interface IdentityProviderConfig {
  /** The expected `iss`, and where discovery starts unless `jwksUrl` is given. */
  issuer: string | undefined
  jwksUrl: string | undefined
  audience: string
  algorithms: IdpAlgorithm[]
  /** The claim holding the user id. */
  userClaim: string
  /** Least time between two fetches of the key set (unknown `kid`s cannot flood the provider). */
  keysRefetchMinMs: number
  /** The key set is refreshed in the background once this old (removed keys stop verifying). */
  keysMaxAgeMs: number
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
    databasePoolSize: vars.DATABASE_POOL_SIZE,
    saleReleaseAfterMs: vars.SALE_RELEASE_AFTER_MS,
    kafkaBrokers: (vars.KAFKA_BROKERS ?? []).map(({ host, port }) => `${host}:${port}`),
    jwtSecret: vars.JWT_SECRET ?? randomBytes(32).toString('base64url'),
    jwtSecretGenerated: vars.JWT_SECRET === undefined,
    receiptSigningKey: vars.RECEIPT_SIGNING_KEY,
    identityProvider: identityProviderOf(vars),
    verifiedTokenCacheSize: vars.JWT_VERIFIED_CACHE_SIZE,
    adminToken: vars.ADMIN_TOKEN ?? randomBytes(24).toString('base64url'),
    adminTokenGenerated: vars.ADMIN_TOKEN === undefined,
    redisPrefix: vars.REDIS_PREFIX,
    queueDrainCron: vars.QUEUE_DRAIN_CRON,
    logLevel: vars.LOG_LEVEL,
    logFormat: vars.LOG_FORMAT,
    requestLog: vars.LOG_REQUESTS,
    saleMetrics: { maxSales: vars.METRICS_SALES_MAX, endedWithinMs: vars.METRICS_SALES_ENDED_WITHIN_MS },
    rateLimitPerUser: { max: vars.RATE_LIMIT_PER_USER, windowMs: vars.RATE_LIMIT_WINDOW_MS },
    statusLimitPerUser: { max: vars.STATUS_LIMIT_PER_USER, windowMs: vars.STATUS_LIMIT_WINDOW_MS },
    addressLimit: { max: vars.ADDRESS_LIMIT_PER_WINDOW, windowMs: vars.ADDRESS_LIMIT_WINDOW_MS },
    trustProxy: vars.TRUST_PROXY,
    couponMissTtlMs: vars.COUPON_MISS_TTL_MS,
    proofOfWork: {
      hmacKey: vars.POW_HMAC_KEY ?? randomBytes(32).toString('base64url'),
      challengeTtlMs: vars.POW_CHALLENGE_TTL_MS,
    },
    streamDrain: {
      batchSize: vars.STREAM_BATCH_SIZE,
      reclaimIdleMs: vars.STREAM_RECLAIM_IDLE_MS,
      maxDeliveries: vars.STREAM_MAX_DELIVERIES,
    },
    syncLockLeaseMs: vars.SYNC_LOCK_LEASE_MS,
    runWorkers: vars.RUN_WORKERS,
    http: {
      maxConnections: vars.HTTP_MAX_CONNECTIONS,
      maxConnectionsSet: env.HTTP_MAX_CONNECTIONS !== undefined,
      requestTimeoutMs: vars.HTTP_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: vars.HTTP_HEADERS_TIMEOUT_MS,
      keepAliveTimeoutMs: vars.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    },
    eventStreams: {
      maxPerUser: vars.SSE_MAX_PER_USER,
      maxTotal: vars.SSE_MAX_STREAMS,
      heartbeatMs: vars.SSE_HEARTBEAT_MS,
      maxAgeMs: vars.SSE_MAX_AGE_MS,
    },
  }
}

function identityProviderOf(vars: Environment): IdentityProviderConfig | undefined {
  if (vars.JWT_ISSUER === undefined && vars.JWT_JWKS_URL === undefined) return undefined
  if (vars.JWT_AUDIENCE === undefined)
    throw new ConfigError(
      'JWT_AUDIENCE',
      'must be set with JWT_ISSUER or JWT_JWKS_URL (tokens must name this API)',
    )
  return {
    issuer: vars.JWT_ISSUER,
    jwksUrl: vars.JWT_JWKS_URL,
    audience: vars.JWT_AUDIENCE,
    algorithms: vars.JWT_ALGORITHMS,
    userClaim: vars.JWT_USER_CLAIM,
    keysRefetchMinMs: vars.JWT_KEYS_REFETCH_MIN_MS,
    keysMaxAgeMs: vars.JWT_KEYS_MAX_AGE_MS,
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
