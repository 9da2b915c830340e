/**
 * The `kafka` mode against the real broker (scripts/kafka/kafka.sh), Redis and Postgres. Every test has its
 * own schema, Redis prefix, topics (prefixed with the schema) and consumer group. One file on purpose: the
 * broker-restart test must not run beside other Kafka tests.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { afterEach, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import {
  Admin,
  Consumer,
  MessagesStreamModes,
  Producer,
  stringDeserializers,
  stringSerializers,
} from '@platformatic/kafka'
import type { Coupon } from '../src/domain/coupon.ts'
import type { IssuanceMode, IssuanceWorker } from '../src/issuance/core/mode.ts'
import type { IssuedEvent } from '../src/issuance/kafka/kafka-messages.ts'
import {
  type KafkaOptions,
  KafkaRelay,
  KafkaWriter,
  kafkaMode,
  kafkaWorkers,
} from '../src/issuance/kafka/kafka-mode.ts'
import { ensureTopics, resolveKafkaOptions } from '../src/issuance/kafka/kafka-options.ts'
import { auditCoupon } from '../src/issuance/service/audit.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { runConcurrently } from './support/app.ts'
import { createTestEnv, eventually, insertTestCoupon, issuedRows, type TestEnv } from './support/infra.ts'
import { refusal } from './support/outcomes.ts'

const BROKERS = (process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',')
const KAFKA_SH = new URL('../scripts/kafka/kafka.sh', import.meta.url).pathname
const CHILD = new URL('./fixtures/kafka-child.ts', import.meta.url).pathname
const execFileAsync = promisify(execFile)

async function kafkaSh(command: 'start' | 'stop'): Promise<void> {
  await execFileAsync('bash', [KAFKA_SH, command], { timeout: 180_000 })
}

interface Answer {
  userId: string
  status: number
  position?: number
}

interface Sale {
  env: TestEnv
  options: KafkaOptions
  topics: ReturnType<typeof resolveKafkaOptions>['topics']
  mode: IssuanceMode
  coupon: Coupon
  workers: IssuanceWorker[]
  children: ChildProcess[]
  readerGroups: string[]
}

const sales: Sale[] = []

/** A kafka coupon with its own schema, Redis prefix, topics and consumer group; nothing runs yet. */
async function openSale(label: string, quantity: number): Promise<Sale> {
  const env = await createTestEnv(label)
  const options: KafkaOptions = {
    brokers: BROKERS,
    topicPrefix: `${env.schema}.`,
    clientId: env.schema.replaceAll('_', '-'),
    groupId: `${env.schema}-writers`,
    // Short, so a killed member's partitions move on quickly (6 s is the broker's minimum).
    sessionTimeoutMs: 6_000,
    heartbeatIntervalMs: 500,
    drain: { reclaimIdleMs: 1_000, refreshMs: 200 },
  }
  const mode = kafkaMode(env, options)
  const coupon = await insertTestCoupon(env.db, { quantity, issueMode: 'kafka' })
  await mode.prepare(coupon)
  const topics = resolveKafkaOptions(options).topics
  const sale = { env, options, topics, mode, coupon, workers: [], children: [], readerGroups: [] }
  sales.push(sale)
  return sale
}

async function closeSale(sale: Sale): Promise<void> {
  for (const child of sale.children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await Promise.all(sale.workers.map((worker) => worker.stop()))
  const admin = new Admin({ clientId: 'test-cleanup', bootstrapBrokers: BROKERS })
  await admin.deleteTopics({ topics: Object.values(sale.topics) }).catch(() => {})
  await admin.deleteGroups({ groups: [sale.options.groupId!, ...sale.readerGroups] }).catch(() => {})
  await admin.close()
  await sale.env.close()
}

async function startWorkers(sale: Sale, workers: IssuanceWorker[]): Promise<void> {
  sale.workers.push(...workers)
  await Promise.all(workers.map((worker) => worker.start()))
}

async function admit(sale: Sale, users: string[], concurrency = 200): Promise<Answer[]> {
  return runConcurrently(users.length, concurrency, async (i) => {
    const userId = users[i]!
    const outcome = await sale.mode.request(sale.coupon, userId)
    if (outcome.kind !== 'admitted')
      return { userId, status: (await refusal(Promise.resolve(outcome))).status }
    return { userId, status: outcome.httpStatus, position: outcome.issuance.position }
  })
}

function users(from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => `user-${from + i}`)
}

/** Starts a fixture worker that kills itself (see test/fixtures/kafka-child.ts); resolves with its output. */
function spawnChild(sale: Sale, role: 'relay' | 'writer'): { child: ChildProcess; exited: Promise<string> } {
  const child = spawn(process.execPath, [CHILD, role], {
    env: { ...process.env, ...sale.env.childEnv, KAFKA_OPTIONS: JSON.stringify(sale.options) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  sale.children.push(child)
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  return { child, exited: once(child, 'exit').then(() => output) }
}

async function rowCount(sale: Sale): Promise<number> {
  return (await issuedRows(sale.env.db, sale.coupon.id)).length
}

/** Messages ever written to a topic (sum of the partitions' end offsets). */
async function topicSize(topic: string): Promise<number> {
  const admin = new Admin({ clientId: 'test-offsets', bootstrapBrokers: BROKERS })
  try {
    const metadata = await admin.metadata({ topics: [topic] })
    const partitions = metadata.topics.get(topic)?.partitionsCount ?? 0
    const [listed] = await admin.listOffsets({
      topics: [
        {
          name: topic,
          partitions: Array.from({ length: partitions }, (_, partitionIndex) => ({
            partitionIndex,
            timestamp: -1n,
          })),
        },
      ],
    })
    return (listed?.partitions ?? []).reduce((sum, p) => sum + Number(p.offset), 0)
  } finally {
    await admin.close()
  }
}

/** Offsets the writers' group committed on the requests topic, summed (0 when none). */
async function committedOffsets(sale: Sale): Promise<number> {
  const admin = new Admin({ clientId: 'test-offsets', bootstrapBrokers: BROKERS })
  try {
    const [group] = await admin.listConsumerGroupOffsets({ groups: [sale.options.groupId!] })
    const topic = group?.topics.find((t) => t.name === sale.topics.requests)
    return (topic?.partitions ?? []).reduce((sum, p) => sum + Math.max(Number(p.committedOffset), 0), 0)
  } finally {
    await admin.close()
  }
}

interface ReadMessage {
  key: string
  value: string
  headers: Map<string, string>
}

/** Reads a topic from the beginning with a fresh group until `count` messages arrived. */
async function readTopic(sale: Sale, topic: string, count: number): Promise<ReadMessage[]> {
  const groupId = `${sale.env.schema}-reader-${randomUUID()}`
  sale.readerGroups.push(groupId)
  const consumer = new Consumer({
    clientId: 'test-reader',
    groupId,
    bootstrapBrokers: BROKERS,
    deserializers: stringDeserializers,
    maxWaitTime: 200,
  })
  const messages: ReadMessage[] = []
  try {
    const stream = await consumer.consume({
      topics: [topic],
      mode: MessagesStreamModes.EARLIEST,
      autocommit: false,
    })
    const timer = setTimeout(
      () => stream.destroy(new Error(`read only ${messages.length} of ${count}`)),
      30_000,
    )
    try {
      for await (const message of stream) {
        messages.push({ key: message.key, value: message.value, headers: message.headers })
        if (messages.length >= count) break
      }
    } finally {
      clearTimeout(timer)
    }
  } finally {
    await consumer.close(true)
  }
  return messages
}

/** Invariants 1-4 of docs/api.md for a finished sale: the accepted users, and only they, hold exactly one row each. */
async function assertIssuedExactlyTheAccepted(sale: Sale, answers: Answer[]): Promise<void> {
  const accepted = answers.filter((a) => a.status === 202)
  const rows = await issuedRows(sale.env.db, sale.coupon.id)
  assert.equal(rows.length, accepted.length, 'one row per accepted request')
  assert.ok(rows.length <= sale.coupon.quantity, 'no over-issue')
  assert.equal(new Set(rows.map((r) => r.user_id)).size, rows.length, 'no duplicate rows')
  assert.deepEqual(
    rows.map((r) => r.user_id).sort(),
    accepted.map((a) => a.userId).sort(),
    'the issued users are exactly the accepted ones',
  )
  assert.deepEqual(
    rows.map((r) => r.position),
    Array.from({ length: rows.length }, (_, i) => i + 1),
    'positions are exactly 1..n',
  )
  const refused = new Set(answers.filter((a) => a.status === 410).map((a) => a.userId))
  assert.ok(
    rows.every((r) => !refused.has(r.user_id)),
    'no sold-out user has a row',
  )
  const audit = await auditCoupon(sale.env, sale.coupon, sale.mode)
  assert.deepEqual(audit.inconsistencies, [])
  assert.equal(audit.duplicateRows, 0)
}

/**
 * Once the relay is done: the writers committed every message of the requests topic, none left behind.
 * (Kafka carries requests at least once, so the topic may hold more messages than requests.)
 */
async function assertAllConsumed(sale: Sale): Promise<void> {
  const published = await topicSize(sale.topics.requests)
  await eventually(async () => (await committedOffsets(sale)) === published, 'every offset committed', 60_000)
}

/** The issued topic holds one event per row, with the row's ids and position (repeats allowed: at least once). */
async function assertIssuedTopicHoldsTheRows(sale: Sale): Promise<void> {
  const messages = await readTopic(sale, sale.topics.issued, await topicSize(sale.topics.issued))
  const events = new Map<number, string>()
  for (const message of messages) {
    const event = JSON.parse(message.value) as IssuedEvent
    const summary = `${event.couponId}/${event.userId}/${event.userCouponId}/${event.position}`
    assert.equal(events.get(event.userCouponId) ?? summary, summary, 'a repeated event says the same')
    events.set(event.userCouponId, summary)
  }
  const rows = await sale.env.db.query<{ id: number; user_id: string; position: number }>(
    'SELECT id, user_id, position FROM user_coupons WHERE coupon_id = $1',
    [sale.coupon.id],
  )
  assert.deepEqual(
    [...events.values()].sort(),
    rows.rows.map((r) => `${sale.coupon.id}/${r.user_id}/${r.id}/${r.position}`).sort(),
    'the issued topic holds exactly the issued rows',
  )
}

async function streamLength(sale: Sale): Promise<number> {
  return sale.env.redis.xlen(couponKeys(sale.env.redisPrefix, sale.coupon.id).stream)
}

/** The relay group has read and acknowledged every entry (they stay in the stream until they are rows). */
async function relayedAll(sale: Sale): Promise<boolean> {
  const groups = (await sale.env.redis.xinfo(
    'GROUPS',
    couponKeys(sale.env.redisPrefix, sale.coupon.id).stream,
  )) as (string | number)[][]
  const relay = groups
    .map((flat) =>
      Object.fromEntries(flat.flatMap((value, i) => (i % 2 === 0 ? [[value, flat[i + 1]]] : []))),
    )
    .find((group) => group.name === 'relay')
  return relay?.pending === 0 && relay.lag === 0
}

describe('kafka mode on a real broker', () => {
  before(async () => {
    await kafkaSh('start')
  })
  afterEach(async () => {
    await Promise.all(sales.splice(0).map(closeSale))
  })

  it('issues exactly the first 100 of 3000 concurrent requests and publishes every issued coupon', async () => {
    const sale = await openSale('kafkaload', 100)
    await startWorkers(sale, kafkaWorkers(sale.env, sale.options))
    const everyone = users(0, 2500)
    const answers = await admit(sale, [...everyone, ...everyone.slice(0, 500)])

    const accepted = answers.filter((a) => a.status === 202)
    assert.equal(accepted.length, 100)
    assert.equal(
      answers.filter((a) => a.status === 202 || a.status === 409 || a.status === 410).length,
      3000,
      'every answer is 202, 409 or 410',
    )
    assert.deepEqual(
      accepted.map((a) => a.position).sort((x, y) => Number(x) - Number(y)),
      Array.from({ length: 100 }, (_, i) => i + 1),
      'accepted positions are exactly 1..100',
    )
    await eventually(async () => (await rowCount(sale)) === 100, 'all accepted rows written', 60_000)
    await assertIssuedExactlyTheAccepted(sale, answers)

    await eventually(async () => (await streamLength(sale)) === 0, 'the outbox stream emptied')
    await assertAllConsumed(sale)
    await eventually(async () => (await topicSize(sale.topics.issued)) >= 100, 'issued events published')
    await Promise.all(sale.workers.splice(0).map((worker) => worker.stop()))
    await assertIssuedTopicHoldsTheRows(sale)
  })

  it('keeps coupons selling at the same time apart', async () => {
    const first = await openSale('kafkamulti', 50)
    const others: Sale[] = []
    for (const quantity of [70, 90]) {
      const coupon = await insertTestCoupon(first.env.db, { quantity, issueMode: 'kafka' })
      await first.mode.prepare(coupon)
      others.push({ ...first, coupon })
    }
    await startWorkers(first, kafkaWorkers(first.env, first.options))
    const all = [first, ...others]
    const answers = await Promise.all(all.map((sale) => admit(sale, users(0, 200), 100)))
    for (const [i, sale] of all.entries()) {
      assert.equal(answers[i]!.filter((a) => a.status === 202).length, sale.coupon.quantity)
      await eventually(
        async () => (await rowCount(sale)) === sale.coupon.quantity,
        `coupon ${sale.coupon.id} written`,
      )
      await assertIssuedExactlyTheAccepted(sale, answers[i]!)
    }
    await eventually(
      async () => (await Promise.all(all.map(streamLength))).every((length) => length === 0),
      'the outbox streams emptied',
    )
    assert.ok((await topicSize(first.topics.requests)) >= 210)
    await assertAllConsumed(first)
  })

  it('parks malformed messages and messages for unknown coupons without holding up the partition', async () => {
    const sale = await openSale('kafkabad', 10)
    await ensureTopics(resolveKafkaOptions(sale.options))
    const producer = new Producer({
      clientId: 'test-garbage',
      idempotent: true,
      bootstrapBrokers: BROKERS,
      serializers: stringSerializers,
    })
    const key = String(sale.coupon.id)
    const request = { couponId: sale.coupon.id, userId: 'intruder', position: 1, requestedAtMs: Date.now() }
    await producer.send({
      messages: [
        // Same key, so the same partition as the coupon's real requests, ahead of them.
        { topic: sale.topics.requests, key, value: 'not json' },
        { topic: sale.topics.requests, key, value: JSON.stringify({ ...request, position: -1 }) },
        { topic: sale.topics.requests, key: 'other', value: JSON.stringify(request) },
        {
          topic: sale.topics.requests,
          key: '987654321',
          value: JSON.stringify({ ...request, couponId: 987654321 }),
        },
      ],
    })
    await producer.close()
    await startWorkers(sale, kafkaWorkers(sale.env, sale.options))
    const answers = await admit(sale, users(0, 5))

    await eventually(async () => (await rowCount(sale)) === 5, 'the real requests written')
    await assertIssuedExactlyTheAccepted(sale, answers)
    await eventually(async () => (await streamLength(sale)) === 0, 'the outbox stream emptied')
    await assertAllConsumed(sale)
    const parked = await readTopic(sale, sale.topics.dead, 4)
    assert.deepEqual([...new Set(parked.map((m) => m.headers.get('reason')))].sort(), [
      'bad position',
      'key is not the couponId',
      'no coupon 987654321',
      'value is not JSON',
    ])
  })

  it('loses nothing and issues nothing twice when the relay dies between publish and XACK', async () => {
    const sale = await openSale('kafkarelaykill', 200)
    const answers = await admit(sale, users(0, 300))
    assert.equal(answers.filter((a) => a.status === 202).length, 200)

    const { exited } = spawnChild(sale, 'relay')
    const output = await exited
    assert.match(output, /published 200/)
    assert.equal(sale.children[0]!.signalCode, 'SIGKILL')
    const { stream } = couponKeys(sale.env.redisPrefix, sale.coupon.id)
    const [pending] = (await sale.env.redis.xpending(stream, 'relay')) as [number]
    assert.equal(pending, 200, 'the published entries are still pending in Redis')
    assert.ok((await topicSize(sale.topics.requests)) >= 200, 'and already on the topic')

    // A fresh relay takes the dead one's entries over and publishes them again; the writers absorb the copies.
    await startWorkers(sale, [
      new KafkaRelay(sale.env, sale.options),
      new KafkaWriter(sale.env, sale.options),
    ])
    await eventually(async () => (await streamLength(sale)) === 0, 'the outbox stream emptied', 60_000)
    // Copies the dead relay published may be written (and their entries deleted) before the take-over:
    // then they are not sent again. Either way each request reached Kafka at least once.
    assert.ok((await topicSize(sale.topics.requests)) >= 200, 'every request reached Kafka')
    await assertAllConsumed(sale)
    await assertIssuedExactlyTheAccepted(sale, answers)
  })

  it('issues nothing twice when a writer dies after its Postgres commit, before its offset commit', async () => {
    const sale = await openSale('kafkawriterkill', 200)
    const relay = new KafkaRelay(sale.env, sale.options)
    await startWorkers(sale, [relay])
    const answers = await admit(sale, users(0, 300))
    await eventually(() => relayedAll(sale), 'all requests relayed')
    assert.equal(await streamLength(sale), 200, 'relayed entries stay in the outbox until they are rows')
    assert.ok((await topicSize(sale.topics.requests)) >= 200)

    const { exited } = spawnChild(sale, 'writer')
    const written = Number(/written (\d+)/.exec(await exited)?.[1])
    assert.equal(sale.children[0]!.signalCode, 'SIGKILL')
    assert.ok(written > 0)
    assert.equal(await rowCount(sale), written, 'the killed writer committed its rows')
    assert.equal(await committedOffsets(sale), 0, 'but no offset')

    // The same group redelivers the batch to a fresh writer once the dead member's session expired.
    await startWorkers(sale, [new KafkaWriter(sale.env, sale.options)])
    await assertAllConsumed(sale)
    await assertIssuedExactlyTheAccepted(sale, answers)
    await eventually(async () => (await topicSize(sale.topics.issued)) >= 200, 'issued events published')
    await assertIssuedTopicHoldsTheRows(sale)
  })

  it('keeps answering while the broker is down and delivers the backlog once it is back', async () => {
    const sale = await openSale('kafkabroker', 300)
    await startWorkers(sale, kafkaWorkers(sale.env, sale.options))
    const early = await admit(sale, users(0, 100))
    await eventually(async () => (await rowCount(sale)) === 100, 'the first 100 written')

    await kafkaSh('stop')
    let late: Answer[]
    try {
      late = await admit(sale, users(100, 500))
      assert.equal(late.filter((a) => a.status === 202).length, 200, 'admissions accepted without the broker')
      assert.equal(late.filter((a) => a.status === 410).length, 200, 'and refused as sold out')
      assert.equal(await rowCount(sale), 100, 'nothing reached Postgres meanwhile')
      assert.equal(await streamLength(sale), 200, 'the backlog waits in the Redis outbox')
    } finally {
      await kafkaSh('start')
    }
    await eventually(async () => (await rowCount(sale)) === 300, 'the backlog written', 120_000)
    await assertIssuedExactlyTheAccepted(sale, [...early, ...late])
    await eventually(async () => (await streamLength(sale)) === 0, 'the outbox stream emptied')
    await assertAllConsumed(sale)
  })
})
