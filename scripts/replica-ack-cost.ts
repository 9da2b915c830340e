/**
 * What REDIS_REPLICA_ACK=1 costs: the same stream-mode sale, once without and once with the replica
 * acknowledgement, over real HTTP with distinct users (every request an admission), against a Redis
 * Cluster of its own (3 masters + 3 replicas, test/support/redis-cluster.ts) or one redis-server with one
 * replica. Prints req/s and latency percentiles.
 * Usage: node scripts/replica-ack-cost.ts [cluster|replica] [requests=20000] [concurrency=64]
 * (Postgres on 127.0.0.1:5432 as for the tests; the load generator shares the machine with the server.)
 */
import { startTestApp } from '../test/support/app.ts'
import { startOwnCluster } from '../test/support/redis-cluster.ts'
import { startOwnRedis } from '../test/support/redis-server.ts'

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

async function sale(own: Target, ack: 'none' | '1') {
  const t = await startTestApp(
    `ackcost${ack}`,
    {
      REDIS_REPLICA_ACK: ack,
      RATE_LIMIT_PER_USER: '1000000',
      ...(own.redisUrl === undefined ? {} : { REDIS_URL: own.redisUrl }),
    },
    { env: own.clusterNodes ? { redisClusterNodes: own.clusterNodes } : {} },
  )
  try {
    const coupon = await t.createCoupon({ quantity: requests * 2, issueMode: 'stream' })
    const tokens = Array.from({ length: requests }, (_, i) => t.tokenFor(`ack${ack}-u${i}`))
    // Warm-up: connections, scripts, the coupon cache.
    for (let i = 0; i < 200; i++)
      await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(`warm${ack}-${i}`) })
    const latencies: number[] = []
    const statuses = new Map<number, number>()
    let next = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < requests) {
          const token = tokens[next++]!
          const at = performance.now()
          const { status } = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token })
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
    await t.close()
  }
}

const own = await startTarget()
try {
  // Alternated, twice each, so a drift of the shared machine shows as spread rather than as a difference.
  for (const ack of ['none', '1', 'none', '1'] as const) console.log(JSON.stringify(await sale(own, ack)))
} finally {
  await own.destroy()
}
