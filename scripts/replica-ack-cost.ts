/**
 * What REDIS_REPLICA_ACK=1 costs: the same stream-mode sale, once without and once with the replica
 * acknowledgement, over real HTTP with distinct users (every request an admission), against a Redis
 * Cluster of its own (3 masters + 3 replicas, bench/lib/redis-cluster.ts) or one redis-server with one
 * replica. The server runs in this process (as the tests run it), so the load generator shares its event
 * loop. Prints req/s and latency percentiles.
 * Usage: npx node scripts/replica-ack-cost.ts [cluster|replica] [requests=20000] [concurrency=64]
 * (Postgres at DATABASE_URL, in a schema of its own dropped at the end.)
 */
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import { AdminClient } from '../bench/lib/admin.ts'
import { dropSchema } from '../bench/lib/probes.ts'
import { startOwnCluster } from '../bench/lib/redis-cluster.ts'
import { startOwnRedis } from '../bench/lib/redis-server.ts'
import { signUserToken } from '../src/auth/tokens.ts'
import { type Config, loadConfig } from '../src/config/config.ts'
import { buildApp } from '../src/http/app.ts'
import { migrate } from '../src/storage/migrate.ts'
import { createPool, ensureDatabase } from '../src/storage/postgres.ts'

const target = process.argv[2] === 'replica' ? 'replica' : 'cluster'
const requests = Number(process.argv[3] ?? 20_000)
const concurrency = Number(process.argv[4] ?? 64)

interface Target {
  /** REDIS_URL of the master (the replica target), or the cluster's nodes. */
  redisUrl?: string
  clusterNodes?: { host: string; port: number }[]
  destroy(): Promise<void>
}

async function startTarget(): Promise<Target> {
  if (target === 'cluster') {
    const cluster = await startOwnCluster()
    return { clusterNodes: cluster.nodes, destroy: () => cluster.destroy() }
  }
  const master = await startOwnRedis({ persistence: 'none' })
  const replica = await startOwnRedis({
    persistence: 'none',
    args: ['--replicaof', '127.0.0.1', String(master.port)],
  })
  return {
    redisUrl: master.url,
    async destroy() {
      await replica.destroy()
      await master.destroy()
    },
  }
}

const JWT_SECRET = randomBytes(32).toString('base64url')
const ADMIN_TOKEN = randomBytes(24).toString('base64url')

/** A server in this process on an ephemeral port, with a fresh schema and key prefix of its own. */
async function startApp(own: Target, ack: 'none' | '1'): Promise<{ app: FastifyInstance; config: Config }> {
  const id = `ackcost${ack}_${randomBytes(4).toString('hex')}`
  const config = loadConfig({
    ...process.env,
    PORT: '0',
    DATABASE_SCHEMA: id,
    REDIS_PREFIX: `${id}:`,
    JWT_SECRET,
    ADMIN_TOKEN,
    LOG_LEVEL: 'silent',
    REDIS_REPLICA_ACK: ack,
    RATE_LIMIT_PER_USER: '1000000',
    ...(own.redisUrl === undefined ? {} : { REDIS_URL: own.redisUrl }),
    ...(own.clusterNodes === undefined
      ? {}
      : { REDIS_CLUSTER_NODES: own.clusterNodes.map(({ host, port }) => `${host}:${port}`).join(',') }),
  })
  await ensureDatabase(config.databaseUrl)
  const db = createPool({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, max: 1 })
  try {
    await migrate(db, config.databaseSchema)
  } finally {
    await db.end()
  }
  const app = await buildApp({ config, runWorkers: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, config }
}

async function sale(own: Target, ack: 'none' | '1') {
  const { app, config } = await startApp(own, ack)
  const address = app.server.address()
  const baseUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const dispatcher = new Agent({ connections: 64, pipelining: 1, keepAliveTimeout: 10_000 })
  const post = async (path: string, token: string) => {
    const response = await request(`${baseUrl}${path}`, {
      method: 'POST',
      dispatcher,
      headers: { authorization: `Bearer ${token}` },
    })
    await response.body.text()
    return response.statusCode
  }
  try {
    const admin = new AdminClient(baseUrl, ADMIN_TOKEN, dispatcher)
    const couponId = await admin.createCoupon('stream', requests * 2)
    const path = `/coupons/${couponId}/issuance`
    const tokens = Array.from({ length: requests }, (_, i) => signUserToken(JWT_SECRET, `ack${ack}-u${i}`))
    // Warm-up: connections, scripts, the coupon cache.
    for (let i = 0; i < 200; i++) await post(path, signUserToken(JWT_SECRET, `warm${ack}-${i}`))
    const latencies: number[] = []
    const statuses = new Map<number, number>()
    let next = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < requests) {
          const token = tokens[next++]!
          const at = performance.now()
          const status = await post(path, token)
          latencies.push(performance.now() - at)
          statuses.set(status, (statuses.get(status) ?? 0) + 1)
        }
      }),
    )
    const seconds = (performance.now() - started) / 1_000
    latencies.sort((a, b) => a - b)
    const pct = (p: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!.toFixed(1)
    return {
      target,
      REDIS_REPLICA_ACK: ack,
      requests,
      concurrency,
      reqPerSec: Math.round(requests / seconds),
      p50ms: pct(0.5),
      p99ms: pct(0.99),
      statuses: Object.fromEntries(statuses),
    }
  } finally {
    await app.close()
    await dispatcher.close()
    // The keys go with the Redis of the run's own; the schema is dropped here.
    await dropSchema(config.databaseUrl, config.databaseSchema).catch(() => {})
  }
}

const own = await startTarget()
try {
  // Alternated, twice each, so a drift of the shared machine shows as spread rather than as a difference.
  for (const ack of ['none', '1', 'none', '1'] as const) console.log(JSON.stringify(await sale(own, ack)))
} finally {
  await own.destroy()
}
