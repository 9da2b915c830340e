/**
 * Test infrastructure: every test gets its own Postgres schema and Redis key prefix on the real servers,
 * and drops both when it ends.
 */
import { randomBytes } from 'node:crypto'
import { Cluster } from 'ioredis'
import pino from 'pino'
import type { Coupon, IssueMode } from '../../src/domain/coupon.ts'
import type { Discount } from '../../src/domain/discount.ts'
import type { IssuanceContext } from '../../src/issuance/core/context.ts'
import { connectRedis, createRedis, type RedisClient } from '../../src/redis/client.ts'
import { insertCoupon } from '../../src/storage/coupons.ts'
import { migrate } from '../../src/storage/migrate.ts'
import { createPool, type Db, ensureDatabase, quoteIdent } from '../../src/storage/postgres.ts'

export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/coupon_rush_test'
/** The project's own durable Redis (scripts/redis.sh, started by `npm test`) unless TEST_REDIS_URL says otherwise. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6390'
const testRedis = new URL(TEST_REDIS_URL)
/** Host and port of TEST_REDIS_URL, for tests that put a proxy in front of it. */
export const TEST_REDIS_ADDRESS = { host: testRedis.hostname, port: Number(testRedis.port || 6379) }

export interface TestEnv extends IssuanceContext {
  schema: string
  /** Environment for a child process (server or worker) sharing this test's schema and prefix. */
  childEnv: Record<string, string>
  close(): Promise<void>
}

export interface TestEnvOptions {
  /** Seed nodes of a Redis Cluster (bench/lib/redis-cluster.ts) instead of TEST_REDIS_URL. */
  redisClusterNodes?: { host: string; port: number }[]
}

/** A fresh schema (migrated) and Redis prefix; `close` removes every key and the schema. */
export async function createTestEnv(label = 't', options: TestEnvOptions = {}): Promise<TestEnv> {
  const clusterNodes = options.redisClusterNodes ?? []
  const id = `${label
    .replace(/[^a-z0-9]/gi, '')
    .slice(0, 12)
    .toLowerCase()}_${randomBytes(4).toString('hex')}`
  const schema = `test_${id}`
  const redisPrefix = `test:${id}:`
  await ensureDatabase(TEST_DATABASE_URL)
  const db = createPool({ databaseUrl: TEST_DATABASE_URL, schema, max: 20 })
  await migrate(db, schema)
  const redis = createRedis({ url: TEST_REDIS_URL, clusterNodes })
  redis.on('error', () => {})
  await connectRedis(redis)
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
  return {
    db,
    redis,
    redisPrefix,
    logger,
    schema,
    childEnv: {
      DATABASE_URL: TEST_DATABASE_URL,
      DATABASE_SCHEMA: schema,
      REDIS_URL: TEST_REDIS_URL,
      ...(clusterNodes.length === 0
        ? {}
        : { REDIS_CLUSTER_NODES: clusterNodes.map(({ host, port }) => `${host}:${port}`).join(',') }),
      REDIS_PREFIX: redisPrefix,
      // Every test request comes from 127.0.0.1 and some poll: the address and status limits have tests of their own.
      ADDRESS_LIMIT_PER_WINDOW: '100000000',
      STATUS_LIMIT_PER_USER: '1000000',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    },
    async close() {
      await deleteKeys(redis, `${redisPrefix}*`)
      redis.disconnect()
      await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)
      await db.end()
    },
  }
}

/** Deletes the keys matching `pattern`; on a cluster, on every master (SCAN sees one node's keys). */
export async function deleteKeys(redis: RedisClient, pattern: string): Promise<number> {
  if (redis instanceof Cluster) {
    const counts = await Promise.all(redis.nodes('master').map((node) => deleteKeys(node, pattern)))
    return counts.reduce((sum, count) => sum + count, 0)
  }
  let deleted = 0
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (keys.length === 0) continue
    // One DEL per key (pipelined): on a cluster node, keys of different slots may not share a command.
    const pipeline = redis.pipeline()
    for (const key of keys) pipeline.del(key)
    for (const [, count] of (await pipeline.exec()) ?? []) deleted += Number(count ?? 0)
  } while (cursor !== '0')
  return deleted
}

export interface CouponSpec {
  quantity?: number
  issueMode?: IssueMode
  discount?: Discount
  startsInMs?: number
  endsInMs?: number
  name?: string
}

/** Inserts a coupon issuing now (by default) straight into Postgres. */
export async function insertTestCoupon(db: Db, spec: CouponSpec = {}): Promise<Coupon> {
  const now = Date.now()
  return insertCoupon(db, {
    name: spec.name ?? 'Flash sale',
    discount: spec.discount ?? { type: 'FIXED', amount: 5000 },
    quantity: spec.quantity ?? 10,
    issueStartsAt: new Date(now + (spec.startsInMs ?? -60_000)),
    issueEndsAt: new Date(now + (spec.endsInMs ?? 3_600_000)),
    validDays: 30,
    validUntil: null,
    issueMode: spec.issueMode ?? 'stream',
  })
}

/** Polls `check` until it returns true, failing with `message` after `timeoutMs` (a liveness bound, not a speed goal). */
export async function eventually(
  check: () => Promise<boolean>,
  message: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out: ${message}`)
}

/** The issued rows of a coupon, in position order. */
export async function issuedRows(db: Db, couponId: number) {
  const { rows } = await db.query<{ user_id: string; position: number | null }>(
    'SELECT user_id, position FROM user_coupons WHERE coupon_id = $1 ORDER BY position, id',
    [couponId],
  )
  return rows
}
