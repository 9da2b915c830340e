/**
 * Redis SIGKILLed in the middle of a flash sale, with the service as real processes and Redis running with
 * an append-only file (`appendfsync everysec`), as the project's own Redis does. For each mode: thousands of
 * users over keep-alive HTTP connections, the redis-server killed once a third of the stock was
 * acknowledged, started again from its data folder a few seconds later, the users answered 503 retrying
 * after Retry-After, then the drain counted against Postgres.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Admin } from '@platformatic/kafka'
import { Client, Pool } from 'undici'
import { freePort } from '../bench/lib/infra.ts'
import { type OwnRedis, startOwnRedis } from '../bench/lib/redis-server.ts'
import { signUserToken } from '../src/auth/tokens.ts'
import type { IssueMode } from '../src/domain/coupon.ts'
import type { IssuanceContext } from '../src/issuance/core/context.ts'
import { CouponStates } from '../src/issuance/core/coupon-state.ts'
import { decodeRecord } from '../src/issuance/core/record.ts'
import type { KafkaOptions } from '../src/issuance/kafka/kafka-mode.ts'
import { resolveKafkaOptions } from '../src/issuance/kafka/kafka-options.ts'
import { drainQueue } from '../src/issuance/queue/queue-drain.ts'
import { queueMode } from '../src/issuance/queue/queue-mode.ts'
import { connectRedis, createRedis, type RedisClient } from '../src/redis/client.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { runConcurrently, TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from './support/app.ts'
import { createTestEnv, eventually, insertTestCoupon, type TestEnv } from './support/infra.ts'
import { assertRowsAsTold, undecidedPending } from './support/invariants.ts'
import { type Child, spawnNode } from './support/processes.ts'

const BROKERS = (process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',')
/** Liveness bounds only (a busy shared machine), never speed goals. */
const DRAIN_TIMEOUT_MS = 240_000
const OUTAGE_MS = 3_000
const MAX_TRIES = 60

interface Answer {
  userId: string
  status: number
  retryAfter: string | undefined
  position: number | undefined
  code: string | undefined
  startedAt: number
  endedAt: number
}

interface Outage {
  /** When the redis-server process had exited. */
  downFrom: number
  /** When it was started again (nothing was served between the two). */
  downUntil: number
  /** Admitted requests only Redis held (not rows yet) when it was killed. */
  backlog: number
}

interface Row {
  user_id: string
  position: string | null
  requested_at: Date
}

/** One sale's world: its own redis-server (AOF), Postgres schema, server process(es). */
class CrashSale {
  readonly mode: IssueMode
  readonly appendfsync: string
  readonly own: OwnRedis
  readonly env: TestEnv
  readonly redis: RedisClient
  readonly port: number
  readonly children: Child[] = []
  readonly kafka: KafkaOptions | undefined
  private readonly pool: Pool

  private constructor(
    mode: IssueMode,
    appendfsync: string,
    own: OwnRedis,
    env: TestEnv,
    redis: RedisClient,
    port: number,
  ) {
    this.mode = mode
    this.appendfsync = appendfsync
    this.own = own
    this.env = env
    this.redis = redis
    this.port = port
    this.pool = new Pool(`http://127.0.0.1:${port}`, {
      connections: 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
    })
    this.kafka =
      mode === 'kafka'
        ? {
            brokers: BROKERS,
            topicPrefix: `${env.schema}.`,
            clientId: env.schema.replaceAll('_', '-'),
            groupId: `${env.schema}-writers`,
            sessionTimeoutMs: 6_000,
            heartbeatIntervalMs: 500,
            drain: { refreshMs: 200 },
          }
        : undefined
  }

  static async open(mode: IssueMode, persistence: 'everysec' | 'always'): Promise<CrashSale> {
    const own = await startOwnRedis({ persistence })
    const env = await createTestEnv(`crash${mode}`)
    const redis = createRedis({ url: own.url, clusterNodes: [], name: 'crash-test' })
    redis.on('error', () => {})
    const sale = new CrashSale(mode, persistence, own, env, redis, await freePort())
    try {
      await connectRedis(redis)
      await sale.startProcesses()
    } catch (error) {
      console.error(sale.output())
      await sale.close()
      throw error
    }
    return sale
  }

  private async startProcesses(): Promise<void> {
    const common = {
      ...this.env.childEnv,
      REDIS_URL: this.own.url,
      JWT_SECRET: TEST_JWT_SECRET,
      ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      RATE_LIMIT_PER_USER: '1000',
      // Entries a writer had read when Redis died are taken over soon after it is back.
      STREAM_RECLAIM_IDLE_MS: '2000',
      QUEUE_DRAIN_CRON: '* * * * * *',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    }
    if (this.kafka === undefined) {
      this.children.push(spawnNode('bin/coupon-rush.mjs', { ...common, PORT: String(this.port) }, ['serve']))
    } else {
      // The API admits; the relay and writer run in a worker process on this test's topics and group.
      this.children.push(
        spawnNode(
          'bin/coupon-rush.mjs',
          { ...common, PORT: String(this.port), KAFKA_BROKERS: BROKERS.join(','), RUN_WORKERS: 'false' },
          ['serve'],
        ),
      )
      const workers = spawnNode('test/fixtures/kafka-workers.ts', {
        ...common,
        KAFKA_OPTIONS: JSON.stringify(this.kafka),
      })
      this.children.push(workers)
      await workers.waitFor(/workers running/, 60_000)
    }
    await eventually(
      async () => (await this.call('GET', '/readyz').catch(() => undefined))?.status === 200,
      'the API process is ready',
      60_000,
    )
  }

  async call(method: 'GET' | 'POST', path: string, token?: string, body?: unknown) {
    const response = await this.pool.request({
      method,
      path,
      headers: {
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await response.body.text()
    const retryAfter = response.headers['retry-after']
    return {
      status: response.statusCode,
      retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
      body: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>,
    }
  }

  async createCoupon(quantity: number): Promise<number> {
    const now = Date.now()
    const created = await this.call('POST', '/admin/coupons', TEST_ADMIN_TOKEN, {
      name: `Redis crash ${this.mode}`,
      discount: { type: 'FIXED', amount: 1000 },
      quantity,
      issueStartsAt: new Date(now - 1_000).toISOString(),
      issueEndsAt: new Date(now + 3_600_000).toISOString(),
      validDays: 7,
      issueMode: this.mode,
    })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    return created.body.id as number
  }

  async rows(couponId: number): Promise<Row[]> {
    const { rows } = await this.env.db.query<Row>(
      'SELECT user_id, position, requested_at FROM user_coupons WHERE coupon_id = $1 ORDER BY position',
      [couponId],
    )
    return rows
  }

  /** Last process output, for a failure message. */
  output(): string {
    return this.children.map((child) => child.output().slice(-4_000)).join('\n---\n')
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((child) => child.kill('SIGKILL')))
    await this.pool.close()
    this.redis.disconnect()
    await this.own.destroy()
    if (this.kafka !== undefined) {
      const admin = new Admin({ clientId: 'test-cleanup', bootstrapBrokers: BROKERS })
      const { topics, groupId } = resolveKafkaOptions(this.kafka)
      await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {})
      await admin.deleteGroups({ groups: [groupId] }).catch(() => {})
      await admin.close()
    }
    await this.env.close()
  }
}

/**
 * Every user requests once; a 503 is retried after its Retry-After, as a client should. Once `killAfter`
 * requests were acknowledged and some admitted requests are not rows yet (the worst moment: only Redis holds
 * them), the redis-server is SIGKILLed, left down for OUTAGE_MS, and started again from its data folder.
 */
async function runSale(
  sale: CrashSale,
  couponId: number,
  users: number,
  concurrency: number,
  killAfter: number,
): Promise<{ answers: Answer[]; outage: Outage }> {
  const answers: Answer[] = []
  let acknowledged = 0
  let finished = false
  const crash = async (): Promise<Outage> => {
    while (acknowledged < killAfter && !finished) await sleep(5)
    const deadline = Date.now() + 30_000
    let held = await backlog(sale, couponId)
    while (held === 0 && Date.now() < deadline) {
      await sleep(2)
      held = await backlog(sale, couponId)
    }
    await sale.own.kill()
    const downFrom = Date.now()
    await sleep(OUTAGE_MS)
    const downUntil = Date.now()
    await sale.own.start()
    return { downFrom, downUntil, backlog: held }
  }
  const outage = crash()
  await runConcurrently(users, concurrency, async (i) => {
    const userId = `${sale.mode}-u${i}`
    const token = signUserToken(TEST_JWT_SECRET, userId)
    for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
      const startedAt = Date.now()
      const reply = await sale.call('POST', `/coupons/${couponId}/issuance`, token)
      const answer: Answer = {
        userId,
        status: reply.status,
        retryAfter: reply.retryAfter,
        position: typeof reply.body.position === 'number' ? reply.body.position : undefined,
        code: typeof reply.body.code === 'string' ? reply.body.code : undefined,
        startedAt,
        endedAt: Date.now(),
      }
      answers.push(answer)
      if (answer.status === 201 || answer.status === 202) acknowledged += 1
      if (answer.status !== 503) return
      await sleep(Number(answer.retryAfter ?? 1) * 1_000)
    }
  })
  finished = true
  const crashed = await outage
  assert.ok(
    answers.some((a) => a.startedAt > crashed.downUntil),
    'the sale went on after Redis was back (the crash came in the middle)',
  )
  return { answers, outage: crashed }
}

/** Admitted requests Redis holds that are not decided in Postgres yet (stream/kafka: the stream; queue: the queue). */
async function backlog(sale: CrashSale, couponId: number): Promise<number> {
  const keys = couponKeys(sale.env.redisPrefix, couponId)
  if (sale.mode === 'stream' || sale.mode === 'kafka') return sale.redis.xlen(keys.stream)
  if (sale.mode === 'queue') return sale.redis.zcard(keys.queue)
  return 1
}

interface Figures {
  mode: IssueMode
  appendfsync: string
  /** Admitted, not yet rows, when Redis died. */
  backlogAtKill: number
  acknowledged: number
  lost: number
  duplicated: number
  overIssued: number
  unavailable: number
  unavailableWhileDown: number
  unavailableWithRow: number
  rows: number
}

/** The invariants after the drain, counted against Postgres; returns the figures for the report. */
async function verify(
  sale: CrashSale,
  couponId: number,
  quantity: number,
  answers: Answer[],
  outage: Outage,
): Promise<Figures> {
  const keys = couponKeys(sale.env.redisPrefix, couponId)
  const rows = await sale.rows(couponId)
  const rowOf = new Map(rows.map((row) => [row.user_id, row]))
  const acked = answers.filter((a) => a.status === 201 || a.status === 202)
  const ackedUsers = new Set(acked.map((a) => a.userId))
  const unavailable = answers.filter((a) => a.status === 503)
  const whileDown = answers.filter((a) => a.startedAt >= outage.downFrom && a.endedAt <= outage.downUntil)

  // Honest answers: only these statuses; every 503 says when to retry; nothing served without Redis is a 2xx.
  const statuses = new Set(answers.map((a) => a.status))
  const allowed = sale.mode === 'sync' ? [201, 409, 410, 503] : [202, 409, 410, 503]
  assert.deepEqual(
    [...statuses].filter((s) => !allowed.includes(s)),
    [],
    `unexpected statuses ${JSON.stringify([...statuses])}`,
  )
  assert.ok(
    unavailable.every((a) => a.retryAfter !== undefined && Number(a.retryAfter) >= 1),
    'every 503 carries Retry-After',
  )
  assert.ok(whileDown.length > 0, 'some requests were answered while Redis was down')
  assert.deepEqual(
    whileDown.filter((a) => a.status !== 503).map((a) => `${a.userId}:${a.status}`),
    [],
    'every request answered while Redis was down was 503',
  )
  assert.ok(
    whileDown.every((a) => a.code === 'UNAVAILABLE'),
    'answers while Redis was down are UNAVAILABLE problems',
  )

  // For the figures this test reports.
  const duplicated = rows.length - rowOf.size
  const overIssued = Math.max(rows.length - quantity, 0)
  // The users were twice the stock: with nothing lost, every unit was issued, FCFS.
  assertRowsAsTold(rows, acked, quantity)

  // Nothing acknowledged is lost.
  let lost: string[]
  if (sale.mode === 'queue') {
    // A PENDING answer ends ISSUED or SOLD_OUT; the first `quantity` positions are the issued ones.
    const records = await sale.redis.hgetall(keys.users)
    assert.deepEqual(undecidedPending(acked, records), [], 'every PENDING answer was decided')
    lost = acked.filter((a) => (a.position ?? 0) <= quantity && !rowOf.has(a.userId)).map((a) => a.userId)
    const soldOutWithRow = acked.filter(
      (a) =>
        records[a.userId] !== undefined &&
        decodeRecord(records[a.userId]!).status === 'SOLD_OUT' &&
        rowOf.has(a.userId),
    )
    assert.deepEqual(
      soldOutWithRow.map((a) => a.userId),
      [],
      'a SOLD_OUT user never holds a row',
    )
  } else {
    lost = [...ackedUsers].filter((user) => !rowOf.has(user))
  }
  assert.deepEqual(lost, [], 'every acknowledged request ended as a row')

  // A row of a user never acknowledged: Redis took a request answered 503 before it died (its reply was
  // lost with it), so it was admitted before the crash, and the user's retry was told so (409).
  const rowsOfUnacknowledged = rows.filter((row) => !ackedUsers.has(row.user_id))
  const answersOf = Map.groupBy(answers, (a) => a.userId)
  for (const row of rowsOfUnacknowledged) {
    const mine = answersOf.get(row.user_id) ?? []
    assert.ok(
      mine.some((a) => a.status === 503),
      `${row.user_id} holds a row without a 2xx, so it must have had a 503`,
    )
    if (sale.mode !== 'sync') {
      assert.ok(
        row.requested_at.getTime() <= outage.downFrom,
        `${row.user_id}'s unacknowledged request was admitted before Redis died, not replayed after`,
      )
    }
  }
  // A 409 only answers the retry of a user whose earlier request Redis had taken (no user asked twice).
  for (const answer of answers.filter((a) => a.status === 409)) {
    const mine = answersOf.get(answer.userId) ?? []
    assert.ok(
      mine.some((a) => a.status === 503 && a.startedAt < answer.startedAt),
      `${answer.userId}: 409 after a 503`,
    )
  }
  const unavailableUsers = new Set(unavailable.map((a) => a.userId))
  return {
    mode: sale.mode,
    appendfsync: sale.appendfsync,
    backlogAtKill: outage.backlog,
    acknowledged: acked.length,
    lost: lost.length,
    duplicated,
    overIssued,
    unavailable: unavailable.length,
    unavailableWhileDown: whileDown.length,
    unavailableWithRow: [...unavailableUsers].filter((user) => rowOf.has(user) && !ackedUsers.has(user))
      .length,
    rows: rows.length,
  }
}

/** Waits until the workers wrote everything Redis admitted (stream, kafka) or decided the queue. */
async function drain(sale: CrashSale, couponId: number, quantity: number): Promise<void> {
  const keys = couponKeys(sale.env.redisPrefix, couponId)
  await eventually(
    async () => {
      const rows = (await sale.rows(couponId)).length
      if (sale.mode === 'sync') return true
      const seq = Number((await sale.redis.hget(keys.state, 'seq').catch(() => null)) ?? -1)
      if (sale.mode === 'queue') {
        const waiting = await sale.redis.zcard(keys.queue).catch(() => -1)
        return waiting === 0 && rows === Math.min(seq, quantity)
      }
      return rows === seq
    },
    `the ${sale.mode} workers drained the sale`,
    DRAIN_TIMEOUT_MS,
  ).catch((error: unknown) => {
    // Fall through to the assertions, which say what is missing; the output says why.
    console.error(`${String(error)}\n${sale.output()}`)
  })
}

/**
 * After the crash, a new coupon of the same mode goes end to end, and its decision reaches the user over
 * Server-Sent Events: the workers pick up new coupons and the API's pub/sub subscriber is subscribed again.
 */
async function decisionPushedAfterRestart(sale: CrashSale): Promise<void> {
  const couponId = await sale.createCoupon(1)
  const token = signUserToken(TEST_JWT_SECRET, `${sale.mode}-late`)
  const client = new Client(`http://127.0.0.1:${sale.port}`)
  const controller = new AbortController()
  try {
    const events = await client.request({
      method: 'GET',
      path: '/me/events',
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
      signal: controller.signal,
    })
    assert.equal(events.statusCode, 200)
    let text = ''
    events.body.on('data', (chunk: Buffer) => {
      text += chunk.toString()
    })
    events.body.on('error', () => {})
    await eventually(async () => text.includes('event: ready'), 'the event stream is open')
    let answer: Awaited<ReturnType<CrashSale['call']>> | undefined
    await eventually(async () => {
      answer = await sale.call('POST', `/coupons/${couponId}/issuance`, token)
      return answer.status !== 503
    }, 'the new coupon is admitted')
    assert.ok(answer?.status === 201 || answer?.status === 202, `admitted: ${answer?.status}`)
    await eventually(
      async () => text.includes(`"couponId":${couponId}`) && text.includes('"status":"ISSUED"'),
      'the ISSUED decision is pushed over SSE',
      60_000,
    )
  } finally {
    controller.abort()
    await client.destroy()
  }
}

describe('a Redis crash in the middle of a sale, Redis with an append-only file', () => {
  const figures: Figures[] = []
  after(() => {
    for (const f of figures) console.log(`redis-crash ${JSON.stringify(f)}`)
  })

  const cases: {
    mode: IssueMode
    appendfsync: 'everysec' | 'always'
    users: number
    quantity: number
    concurrency: number
  }[] = [
    { mode: 'stream', appendfsync: 'everysec', users: 4_000, quantity: 2_000, concurrency: 64 },
    { mode: 'queue', appendfsync: 'everysec', users: 4_000, quantity: 2_000, concurrency: 64 },
    { mode: 'kafka', appendfsync: 'everysec', users: 4_000, quantity: 2_000, concurrency: 64 },
    // A lock and a transaction per request: a smaller sale, the same crash.
    { mode: 'sync', appendfsync: 'everysec', users: 1_200, quantity: 600, concurrency: 32 },
    { mode: 'stream', appendfsync: 'always', users: 4_000, quantity: 2_000, concurrency: 64 },
  ]
  for (const { mode, appendfsync, users, quantity, concurrency } of cases) {
    it(`${mode}, appendfsync ${appendfsync}: loses nothing acknowledged, issues nothing twice or beyond the stock, answers 503 while Redis is down, and resumes by itself (new coupons, pushed decisions)`, async () => {
      const sale = await CrashSale.open(mode, appendfsync)
      try {
        const couponId = await sale.createCoupon(quantity)
        const { answers, outage } = await runSale(sale, couponId, users, concurrency, Math.ceil(quantity / 3))
        await drain(sale, couponId, quantity)
        figures.push(await verify(sale, couponId, quantity, answers, outage))
        await decisionPushedAfterRestart(sale)
      } catch (error) {
        console.error(sale.output())
        throw error
      } finally {
        await sale.close()
      }
    })
  }
})

describe('a queue drain cut off by a Redis crash', () => {
  it('releases its own lease at the next drain instead of waiting out the copy the append-only file kept', async () => {
    const own = await startOwnRedis({ persistence: 'everysec' })
    const env = await createTestEnv('crashlease')
    const redis = createRedis({ url: own.url, clusterNodes: [], name: 'crash-lease' })
    redis.on('error', () => {})
    const ctx: IssuanceContext = { ...env, redis }
    const blocker = await env.db.connect()
    try {
      await connectRedis(redis)
      const mode = queueMode(ctx)
      const coupon = await insertTestCoupon(env.db, { quantity: 10, issueMode: 'queue' })
      await mode.prepare(coupon)
      for (let i = 0; i < 20; i++) await mode.request(coupon, `lease-u${i}`)
      const { drainLease, queue } = couponKeys(env.redisPrefix, coupon.id)

      // The drain takes its lease, then waits for the coupon row, which this test holds locked.
      await blocker.query('BEGIN')
      await blocker.query('SELECT 1 FROM coupons WHERE id = $1 FOR UPDATE', [coupon.id])
      const interrupted = drainQueue(ctx, new CouponStates(ctx).of(coupon.id), coupon)
      await eventually(async () => (await redis.exists(drainLease)) === 1, 'the drain holds its lease')
      // Redis dies mid-drain: the drain fails and cannot release its lease, which the AOF keeps.
      await own.kill()
      await blocker.query('ROLLBACK')
      await assert.rejects(interrupted)
      await own.start()

      let outcome: Awaited<ReturnType<typeof drainQueue>> | undefined
      await eventually(async () => {
        outcome = await drainQueue(ctx, new CouponStates(ctx).of(coupon.id), coupon).catch(() => undefined)
        return outcome !== undefined
      }, 'a drain runs once Redis is back')
      assert.equal(outcome?.drained, true, 'the next drain was not locked out by its own stale lease')
      assert.equal(outcome?.issued, 10)
      assert.equal(outcome?.soldOut, 10)
      assert.equal(await redis.zcard(queue), 0)
    } finally {
      blocker.release()
      redis.disconnect()
      await own.destroy()
      await env.close()
    }
  })
})
