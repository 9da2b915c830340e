/**
 * Every issuance mode on a real Redis Cluster (3 masters + 3 replicas of the test's own, see
 * test/support/redis-cluster.ts): the cross-mode sale of test/invariants.test.ts over HTTP, kafka included,
 * with each coupon's keys on one slot and different coupons on different masters.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Cluster } from 'ioredis'
import { kafkaWorkers } from '../src/issuance/kafka/kafka-mode.ts'
import type { IssuanceWorker } from '../src/issuance/mode.ts'
import { queueScheduler } from '../src/issuance/queue/queue-mode.ts'
import { streamWriters } from '../src/issuance/stream/stream-mode.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { startTestApp, type TestApp } from './support/app.ts'
import { assertSaleInvariants } from './support/invariants.ts'
import { type OwnCluster, startOwnCluster } from './support/redis-cluster.ts'

const BROKERS = process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092'

describe('every mode on a Redis Cluster', () => {
  let cluster: OwnCluster
  let t: TestApp
  const workers: IssuanceWorker[] = []

  before(async () => {
    cluster = await startOwnCluster()
    t = await startTestApp(
      'clustermodes',
      { QUEUE_DRAIN_CRON: '* * * * * *', KAFKA_BROKERS: BROKERS },
      { runWorkers: false, env: { redisClusterNodes: cluster.nodes } },
    )
    assert.ok(t.app.redis instanceof Cluster, 'REDIS_CLUSTER_NODES selects the cluster client')
    // The workers of every mode, the Kafka ones on this test's own topics and group (the broker is shared).
    const ctx = t.app.issuanceContext
    workers.push(
      streamWriters(ctx, { reclaimIdleMs: 2_000 }),
      queueScheduler(ctx, { cron: '* * * * * *' }),
      ...kafkaWorkers(ctx, {
        brokers: BROKERS.split(','),
        topicPrefix: `${t.env.schema}.`,
        clientId: t.env.schema.replaceAll('_', '-'),
        groupId: `${t.env.schema}-writers`,
        sessionTimeoutMs: 6_000,
        heartbeatIntervalMs: 500,
        drain: { refreshMs: 200 },
      }),
    )
    for (const worker of workers) await worker.start()
  })

  after(async () => {
    for (const worker of workers) await worker.stop()
    await t?.close()
    await cluster?.destroy()
  })

  for (const issueMode of ['sync', 'queue', 'stream', 'kafka'] as const) {
    it(`${issueMode}: issues exactly the quantity, once per user, to the first requesters, and decides every request`, async () => {
      await assertSaleInvariants(t, issueMode)
    })
  }

  it('keeps each coupon’s keys on one slot and spreads coupons over the masters', async () => {
    const masters = new Set<number>()
    for (let id = 1; id <= 12; id++) {
      const keys = Object.values(couponKeys(t.env.redisPrefix, id))
      const slots = new Set(await Promise.all(keys.map((key) => cluster.slotOfKey(key))))
      assert.equal(slots.size, 1, `coupon ${id}'s keys share one slot`)
      masters.add(await cluster.masterOfKey(keys[0]!))
    }
    assert.equal(masters.size, 3, 'twelve coupons use all three masters')
  })
})
