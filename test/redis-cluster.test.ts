import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Cluster } from 'ioredis'
import { type OwnCluster, startOwnCluster } from '../bench/lib/redis-cluster.ts'
import { connectRedis, createRedis } from '../src/redis/client.ts'
import { eventually } from './support/infra.ts'

describe('a Redis Cluster of the test’s own', () => {
  let cluster: OwnCluster
  let redis: Cluster

  before(async () => {
    cluster = await startOwnCluster()
    const client = createRedis({ url: 'redis://unused', clusterNodes: cluster.nodes, name: 'cluster-test' })
    assert.ok(client instanceof Cluster, 'clusterNodes selects the ioredis Cluster client')
    redis = client
    await connectRedis(redis)
  })

  after(async () => {
    redis?.disconnect()
    await cluster?.destroy()
  })

  test('serves all slots from three masters, each with one replica, and prints REDIS_CLUSTER_NODES', async () => {
    assert.equal(cluster.nodes.length, 6)
    assert.equal(cluster.nodesEnv, cluster.nodes.map((n) => `${n.host}:${n.port}`).join(','))
    const masters = new Set<number>()
    for (const slot of [0, 5_000, 10_000, 16_383]) masters.add(await cluster.masterOfSlot(slot))
    assert.equal(masters.size, 3)
    // Every node learns the replicas by gossip: a moment after the start some may not have yet.
    for (const master of masters)
      await eventually(async () => (await cluster.replicasOf(master)).length === 1, `a replica of ${master}`)
  })

  test('keys with different hash tags land on different masters and read back through the client', async () => {
    const byMaster = new Map<number, string[]>()
    for (let coupon = 1; coupon <= 30; coupon++) {
      const key = `cluster-test:{c:${coupon}}:state`
      await redis.set(key, `coupon-${coupon}`)
      const master = await cluster.masterOfKey(key)
      byMaster.set(master, [...(byMaster.get(master) ?? []), key])
    }
    assert.equal(byMaster.size, 3, 'thirty coupons spread over all three masters')
    for (const [master, keys] of byMaster) {
      for (const key of keys) {
        assert.equal(await redis.get(key), `coupon-${key.match(/\{c:(\d+)\}/)?.[1]}`)
        // The key is on that master itself, not only reachable through redirects.
        assert.equal(await cluster.masterOfKey(key), master)
      }
    }
  })

  test('a SIGKILLed master is replaced by its replica and keeps what WAIT 1 confirmed', async () => {
    const tag = '{c:failover}'
    const keys = Array.from({ length: 200 }, (_, i) => `cluster-test:${tag}:user:${i}`)
    const doomed = await cluster.masterOfKey(keys[0]!)
    const [replica] = await cluster.replicasOf(doomed)

    // One pipeline goes to the slot's master on one connection, so WAIT counts exactly these writes.
    const pipeline = redis.pipeline()
    for (const [i, key] of keys.entries()) pipeline.set(key, String(i))
    pipeline.call('WAIT', '1', '2000')
    const results = await pipeline.exec()
    assert.ok(results !== null)
    for (const [error] of results) assert.equal(error, null)
    assert.equal(results.at(-1)?.[1], 1, 'the replica acknowledged every write before the kill')

    const promoted = await cluster.killMasterAndAwaitFailover(doomed)
    assert.equal(promoted, replica, 'the killed master’s own replica took over')
    assert.equal(await cluster.masterOfKey(keys[0]!), promoted)

    // The client finds the new master by itself (MOVED / refreshed slots); give it a few tries.
    let values: (string | null)[] = []
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        values = await redis.mget(...keys)
        break
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    assert.deepEqual(
      values,
      keys.map((_, i) => String(i)),
    )

    // The old master comes back as a replica of the new one.
    await cluster.restartDownNodes()
    assert.deepEqual(await cluster.replicasOf(promoted), [doomed])
  })
})
