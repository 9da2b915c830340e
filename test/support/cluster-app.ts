import { Admin } from '@platformatic/kafka'
import { Cluster } from 'ioredis'
import type { OwnCluster } from '../../bench/lib/redis-cluster.ts'
import type { IssuanceWorker } from '../../src/issuance/core/mode.ts'
import { type KafkaOptions, kafkaWorkers } from '../../src/issuance/kafka/kafka-mode.ts'
import { resolveKafkaOptions } from '../../src/issuance/kafka/kafka-options.ts'
import { queueScheduler } from '../../src/issuance/queue/queue-mode.ts'
import { streamWriters } from '../../src/issuance/stream/stream-mode.ts'
import { startTestApp, type TestApp } from './app.ts'

export const TEST_KAFKA_BROKERS = process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092'

/**
 * A real server on the test's own Redis Cluster with the workers of every mode, the Kafka ones on this
 * test's own topics and consumer group (the broker is shared with other tests); `close` also drops those.
 */
export async function startClusterApp(
  label: string,
  cluster: OwnCluster,
  overrides: Record<string, string> = {},
): Promise<TestApp> {
  const t = await startTestApp(
    label,
    { QUEUE_DRAIN_CRON: '* * * * * *', KAFKA_BROKERS: TEST_KAFKA_BROKERS, ...overrides },
    { runWorkers: false, env: { redisClusterNodes: cluster.nodes } },
  )
  if (!(t.app.redis instanceof Cluster))
    throw new Error('REDIS_CLUSTER_NODES did not select the cluster client')
  const ctx = t.app.issuanceContext
  const kafka: KafkaOptions = {
    brokers: TEST_KAFKA_BROKERS.split(','),
    topicPrefix: `${t.env.schema}.`,
    clientId: t.env.schema.replaceAll('_', '-'),
    groupId: `${t.env.schema}-writers`,
    sessionTimeoutMs: 6_000,
    heartbeatIntervalMs: 500,
    drain: { refreshMs: 200 },
  }
  const workers: IssuanceWorker[] = [
    streamWriters(ctx, { reclaimIdleMs: 2_000 }),
    queueScheduler(ctx, { cron: t.config.queueDrainCron }),
    ...kafkaWorkers(ctx, kafka),
  ]
  for (const worker of workers) await worker.start()
  return {
    ...t,
    async close() {
      await Promise.all(workers.map((worker) => worker.stop()))
      await t.close()
      const admin = new Admin({ clientId: 'test-cleanup', bootstrapBrokers: kafka.brokers })
      const { topics, groupId } = resolveKafkaOptions(kafka)
      await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {})
      await admin.deleteGroups({ groups: [groupId] }).catch(() => {})
      await admin.close()
    },
  }
}
