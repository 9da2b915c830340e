import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { type OwnRedis, startOwnRedis } from '../bench/lib/redis-server.ts'
import type { Coupon } from '../src/domain/coupon.ts'
import { CouponStates } from '../src/issuance/core/coupon-state.ts'
import type { IssuanceWorker } from '../src/issuance/core/mode.ts'
import { type IssuanceRecord, toIssuance } from '../src/issuance/core/record.ts'
import { kafkaWorkers } from '../src/issuance/kafka/kafka-mode.ts'
import { SaleReleaser } from '../src/issuance/plumbing/sale-release.ts'
import { queueScheduler } from '../src/issuance/queue/queue-mode.ts'
import { streamWriters } from '../src/issuance/stream/stream-mode.ts'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { eventually } from './support/infra.ts'
import { spawnNode } from './support/processes.ts'

/*
 * Issue 18 item 1: an ended sale whose every request is decided and in Postgres gives its Redis memory back,
 * and every read of it answers afterwards exactly what it answered before. Requests go through the service
 * (the HTTP layer's own call) to keep the file fast; the reads compared go through HTTP.
 */

const KAFKA_BROKERS = process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092'

/**
 * The app's workers, but with Kafka topics and a consumer group of this test's own (the app's defaults are
 * shared by every process on the broker, so another test's writers could take this test's requests).
 */
async function startWorkers(t: TestApp): Promise<IssuanceWorker[]> {
  const ctx = t.app.issuanceContext
  const workers = [
    streamWriters(ctx),
    queueScheduler(ctx, { cron: '* * * * * *' }),
    ...kafkaWorkers(ctx, {
      brokers: KAFKA_BROKERS.split(','),
      topicPrefix: `${t.env.schema}.`,
      groupId: `${t.env.schema}-writers`,
    }),
  ]
  for (const worker of workers) await worker.start()
  return workers
}
const MODES = ['stream', 'queue', 'sync', 'kafka'] as const
// Per sale, by round (each mode gets each size once); sync decides one request at a time under its lock.
const USERS = { redisFirst: [300, 800, 1_500, 3_000, 5_000], sync: [300, 500, 800, 1_200, 2_000] }

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory')
  return Number(/used_memory:(\d+)/.exec(info)?.[1])
}

/** Keys of the coupons (of one coupon: `couponId`) under the prefix. */
async function couponKeyCount(redis: Redis, prefix: string, couponId?: number): Promise<number> {
  let count = 0
  let cursor = '0'
  do {
    const pattern = couponId === undefined ? `${prefix}{c:*` : `${prefix}{c:${couponId}}*`
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1_000)
    count += keys.length
    cursor = next
  } while (cursor !== '0')
  return count
}

interface Sale {
  coupon: Coupon
  users: string[]
}

/** The `index`th sale of the season: its mode and how many users come (each mode gets each size once). */
function seasonSale(index: number): { mode: (typeof MODES)[number]; count: number } {
  const mode = MODES[index % MODES.length]!
  const round = Math.floor(index / MODES.length)
  return { mode, count: (mode === 'sync' ? USERS.sync : USERS.redisFirst)[round]! }
}

/** Opens a sale and sends its users' requests (20% of them win). */
async function runSale(t: TestApp, label: string, mode: string, count: number): Promise<Sale> {
  const created = await t.createCoupon({ issueMode: mode, quantity: Math.ceil(count / 5) })
  const coupon = await t.app.issuance.get(created.id)
  const users = Array.from({ length: count }, (_, k) => `${label}-u${k}`)
  await runConcurrently(count, 32, (k) => t.app.issuance.request(coupon, users[k]!))
  return { coupon, users }
}

/** Ends the sales now, as an admin does (PATCH: Postgres, the window in Redis, and every process told). */
async function endSales(t: TestApp, sales: Sale[]): Promise<void> {
  for (const { coupon } of sales) {
    const ended = await t.http('PATCH', `/admin/coupons/${coupon.id}`, {
      token: t.adminToken,
      body: { issueEndsAt: new Date().toISOString() },
    })
    assert.equal(ended.status, 200, JSON.stringify(ended.body))
  }
}

/** The sales with requests not decided yet, as `mode id: pending/backlog` (empty once all drained). */
async function undrained(t: TestApp, sales: Sale[]): Promise<string[]> {
  const states = new CouponStates(t.app.issuanceContext)
  const left: string[] = []
  for (const { coupon, users } of sales) {
    const { pending, requested } = await t.app.issuance.stats(coupon)
    const backlog = await states.of(coupon.id).backlog()
    // Refusals answered from memory reach the counters a moment later.
    if (pending > 0 || backlog > 0 || requested < users.length)
      left.push(`${coupon.issueMode} ${coupon.id}: ${pending}/${backlog}/${requested}`)
  }
  return left
}

async function soldOutRecordCount(t: TestApp, sales: Sale[]): Promise<number> {
  const states = new CouponStates(t.app.issuanceContext)
  let count = 0
  for (const { coupon } of sales) {
    await states.of(coupon.id).scanRecords((_user, record) => {
      if (record.status === 'SOLD_OUT') count += 1
    })
  }
  return count
}

/** Every read the issue names, for the sale and a sample of its users (winners, losers, a stranger). */
async function readsOf(t: TestApp, { coupon, users }: Sale) {
  const get = async (path: string, token?: string) => {
    const { status, body } = await t.http('GET', path, token === undefined ? {} : { token })
    return { status, body }
  }
  const sample = [...users.slice(0, 3), ...users.slice(-3), `stranger-${coupon.id}`]
  const perUser = await Promise.all(
    sample.map(async (userId) => {
      const token = t.tokenFor(userId)
      const late = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token })
      return {
        userId,
        status: await get(`/coupons/${coupon.id}/issuance`, token),
        mine: await get('/me/coupons', token),
        late: { status: late.status, code: late.body.code },
      }
    }),
  )
  return {
    admin: await get(`/admin/coupons/${coupon.id}`, t.adminToken),
    audit: await get(`/admin/coupons/${coupon.id}/audit`, t.adminToken),
    public: await get(`/coupons/${coupon.id}`),
    perUser,
  }
}

describe('releasing ended sales from Redis', () => {
  let redisServer: OwnRedis
  let observer: Redis
  let t: TestApp
  let workers: IssuanceWorker[]
  before(async () => {
    redisServer = await startOwnRedis({ persistence: 'none' })
    observer = new Redis(redisServer.url)
    // The sales here are released by the test, at the moment it chooses.
    t = await startTestApp('retention', { REDIS_URL: redisServer.url, KAFKA_BROKERS }, { runWorkers: false })
    workers = await startWorkers(t)
  })
  after(async () => {
    await Promise.all(workers.map((worker) => worker.stop()))
    await t.close()
    observer.disconnect()
    await redisServer.destroy()
  })

  it('stops at once when stopped in the middle of a sweep, not a sweep period later', async () => {
    const releaser = new SaleReleaser(t.app.issuanceContext, { afterMs: 3_600_000, sweepMs: 3_600_000 })
    await releaser.start()
    // The first sweep is waiting for Postgres now; a stop that waited for the next sweep would take an hour.
    const stopped = await Promise.race([releaser.stop().then(() => true), sleep(5_000).then(() => false)])
    assert.equal(stopped, true, 'stopped within 5 s')
  })

  it('gives back the memory of 20 sales in every mode, and every read answers as before', async () => {
    const baseline = await usedMemory(observer)
    const sales: Sale[] = []
    for (let index = 0; index < 20; index += 4) {
      const round = [0, 1, 2, 3].map((offset) => {
        const { mode, count } = seasonSale(index + offset)
        return runSale(t, `s${index + offset}`, mode, count)
      })
      sales.push(...(await Promise.all(round)))
    }
    await endSales(t, sales)
    let left: string[] = []
    await eventually(
      async () => {
        left = await undrained(t, sales)
        return left.length === 0
      },
      'every sale drained',
      45_000,
    ).catch((error: Error) => assert.fail(`${error.message}: ${left.join(', ')}`))
    const held = (await usedMemory(observer)) - baseline
    const before = await Promise.all(sales.map((sale) => readsOf(t, sale)))
    const soldOutRecords = await soldOutRecordCount(t, sales)

    const releaser = new SaleReleaser(t.app.issuanceContext, { afterMs: 0, announceMs: 0 })
    assert.equal(await releaser.releaseDue(), sales.length)
    await eventually(
      async () => (await usedMemory(observer)) - baseline < 1_000_000,
      `Redis memory back within 1 MB of its level before the sales (they held ${held} bytes)`,
    )
    const afterRelease = await Promise.all(sales.map((sale) => readsOf(t, sale)))
    for (const [i, sale] of sales.entries()) {
      assert.deepEqual(afterRelease[i], before[i], `${sale.coupon.issueMode} sale ${sale.coupon.id}`)
    }
    // The reads and late requests above loaded nothing back.
    assert.equal(await couponKeyCount(observer, t.env.redisPrefix), 0)
    assert.equal(await releaser.releaseDue(), 0, 'nothing left to release')
    const outcomes = await t.env.db.query<{ status: string; n: number }>(
      'SELECT status, count(*)::int AS n FROM issuance_outcomes GROUP BY status',
    )
    // Only the SOLD_OUT records were Redis's alone (queue's waiting users resolved sold out).
    assert.ok(soldOutRecords > 0)
    assert.deepEqual(outcomes.rows, [{ status: 'SOLD_OUT', n: soldOutRecords }])
    // The public order log, never asked for before the release, was written from the records it freed.
    for (const { coupon } of sales) {
      const log = await t.http('GET', `/coupons/${coupon.id}/order-log`)
      assert.equal(log.status, 200, `${coupon.issueMode} ${coupon.id}: ${JSON.stringify(log.body)}`)
      const entries = log.body.entries as { outcome: string }[]
      const issued = (await t.app.issuance.stats(coupon)).issued
      assert.equal(entries.filter((entry) => entry.outcome === 'ISSUED').length, issued)
      const soldOut = await t.env.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM issuance_outcomes WHERE coupon_id = $1 AND status = 'SOLD_OUT'`,
        [coupon.id],
      )
      assert.equal(entries.filter((entry) => entry.outcome === 'SOLD_OUT').length, soldOut.rows[0]!.n)
    }
  })

  it('loses and duplicates nothing when the releaser is killed in the middle, and the next run finishes', async () => {
    const sale = await runSale(t, 'crash', 'queue', 3_000)
    await endSales(t, [sale])
    await eventually(async () => (await undrained(t, [sale])).length === 0, 'the queue drained', 30_000)
    const records = await recordsOf(t, sale.coupon.id)
    const soldOut = [...records.values()].filter((record) => record.status === 'SOLD_OUT').length
    const before = await readsOf(t, sale)
    // A short lease, so the killed releaser's hold on the sale runs out soon.
    const env = { ...t.env.childEnv, REDIS_URL: redisServer.url, LEASE_MS: '1000' }

    // Two users a page: slow enough to be killed half-way through the copy.
    const slow = spawnNode('test/fixtures/sale-release-child.ts', { ...env, PAGE_SIZE: '2' })
    await slow.waitFor(/releasing/)
    await eventually(async () => (await copiedOutcomes(t, sale)) >= 100, 'the copy began', 20_000)
    await slow.kill('SIGKILL')
    const copiedBeforeKill = await copiedOutcomes(t, sale)
    assert.ok(copiedBeforeKill < soldOut, `killed half-way (${copiedBeforeKill} of ${soldOut} copied)`)

    // The next run finds the sale still held until the killed releaser's lease runs out, then finishes it.
    await eventually(
      async () => {
        const next = spawnNode('test/fixtures/sale-release-child.ts', { ...env, PAGE_SIZE: '500' })
        return /released 1/.test(await next.waitFor(/released \d+/))
      },
      'a later run released the sale',
      20_000,
    )
    assert.equal(await copiedOutcomes(t, sale), soldOut, 'every SOLD_OUT decision copied once')
    assert.equal(await couponKeyCount(observer, t.env.redisPrefix, sale.coupon.id), 0)
    assert.deepEqual(await readsOf(t, sale), before)
    for (const [userId, record] of records) {
      const status = await t.app.issuance.status(sale.coupon.id, userId)
      assert.deepEqual(status, toIssuance(sale.coupon.id, userId, record), userId)
    }
  })
})

async function recordsOf(t: TestApp, couponId: number): Promise<Map<string, IssuanceRecord>> {
  const records = new Map<string, IssuanceRecord>()
  await new CouponStates(t.app.issuanceContext).of(couponId).scanRecords((userId, record) => {
    records.set(userId, record)
  })
  return records
}

async function copiedOutcomes(t: TestApp, { coupon }: Sale): Promise<number> {
  const { rows } = await t.env.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM issuance_outcomes WHERE coupon_id = $1',
    [coupon.id],
  )
  return rows[0]!.n
}

describe('the release worker (SALE_RELEASE_AFTER_MS)', () => {
  let redisServer: OwnRedis
  let observer: Redis
  let t: TestApp
  before(async () => {
    redisServer = await startOwnRedis({ persistence: 'none' })
    observer = new Redis(redisServer.url)
    t = await startTestApp('retentionworker', { REDIS_URL: redisServer.url, SALE_RELEASE_AFTER_MS: '300' })
  })
  after(async () => {
    await t.close()
    observer.disconnect()
    await redisServer.destroy()
  })

  it('releases an ended sale by itself, and a stale copy of the coupon never rebuilds it', async () => {
    const sale = await runSale(t, 'worker', 'stream', 400)
    const stale = sale.coupon
    await endSales(t, [sale])
    await eventually(async () => (await undrained(t, [sale])).length === 0, 'the sale drained')
    const before = await readsOf(t, sale)
    const statsBefore = await t.app.issuance.stats(stale)
    await eventually(
      async () => (await couponKeyCount(observer, t.env.redisPrefix)) === 0,
      'released',
      15_000,
    )
    const { rows } = await t.env.db.query(
      'SELECT 1 FROM coupons WHERE id = $1 AND redis_freed_at IS NOT NULL',
      [stale.id],
    )
    assert.equal(rows.length, 1)
    assert.deepEqual(await readsOf(t, sale), before)
    // A process that missed the announcement still holds the coupon as it was: its reads find out.
    await assert.rejects(t.app.issuance.modeOf(stale).status(stale, sale.users[0]!), /released/)
    assert.deepEqual(await t.app.issuance.stats(stale), statsBefore)
    assert.equal(await couponKeyCount(observer, t.env.redisPrefix), 0, 'nothing loaded back')
  })
})
