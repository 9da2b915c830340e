import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import type { Coupon, Issuance } from '../src/domain/coupon.ts'
import type { IssuanceContext } from '../src/issuance/core/context.ts'
import type { IssuanceMode } from '../src/issuance/core/mode.ts'
import { queueMode, queueScheduler } from '../src/issuance/queue/queue-mode.ts'
import type { QueueScheduler } from '../src/issuance/queue/queue-scheduler.ts'
import { connectRedis, createRedis } from '../src/redis/client.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { createPool, inTransaction } from '../src/storage/postgres.ts'
import { type IssueRequest, issueBatch } from '../src/storage/user-coupons.ts'
import {
  createTestEnv,
  insertTestCoupon,
  issuedRows,
  TEST_DATABASE_URL,
  TEST_REDIS_URL,
  type TestEnv,
} from './support/infra.ts'
import { admitted, refusal } from './support/outcomes.ts'

let env: TestEnv
let mode: IssuanceMode
let scheduler: QueueScheduler

beforeEach(async () => {
  env = await createTestEnv('queue')
  mode = queueMode(env)
  scheduler = queueScheduler(env, { cron: '* * * * * *' })
})

afterEach(async () => {
  await scheduler.stop()
  await env.close()
})

async function queueCoupon(quantity: number): Promise<Coupon> {
  const coupon = await insertTestCoupon(env.db, { quantity, issueMode: 'queue' })
  await mode.prepare(coupon)
  return coupon
}

async function statusOf(coupon: Coupon, userId: string): Promise<Issuance> {
  const issuance = await mode.status(coupon, userId)
  assert.ok(issuance, `${userId} has a request`)
  return issuance
}

/** Admits users one after another (so their positions are their order here). */
async function requestInOrder(coupon: Coupon, users: string[]): Promise<Issuance[]> {
  const answers: Issuance[] = []
  for (const user of users) answers.push(admitted(await mode.request(coupon, user)).issuance)
  return answers
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

describe('queue mode', () => {
  it('answers 202 PENDING with the arrival position and keeps the request waiting', async () => {
    const coupon = await queueCoupon(5)
    const answer = admitted(await mode.request(coupon, 'alice'))
    assert.equal(answer.httpStatus, 202)
    assert.equal(answer.issuance.status, 'PENDING')
    assert.equal(answer.issuance.position, 1)
    assert.equal((await statusOf(coupon, 'alice')).status, 'PENDING')
    assert.equal(await mode.status(coupon, 'bob'), undefined)
    const stats = await mode.stats(coupon)
    assert.deepEqual(stats, { requested: 1, accepted: 1, pending: 1, issued: 0, soldOut: 0, remaining: 5 })
  })

  it('issues the first 5 of 7 waiting users in request order and resolves the other 2 SOLD_OUT', async () => {
    const coupon = await queueCoupon(5)
    const users = range(1, 7).map((i) => `user:${i}`)
    const answers = await requestInOrder(coupon, users)
    assert.deepEqual(
      answers.map((answer) => answer.position),
      range(1, 7),
    )

    const outcome = await scheduler.drainCoupon(coupon)
    assert.deepEqual(outcome, { couponId: coupon.id, drained: true, issued: 5, soldOut: 2 })

    const rows = await issuedRows(env.db, coupon.id)
    assert.deepEqual(
      rows.map((row) => [row.user_id, row.position]),
      range(1, 5).map((i) => [`user:${i}`, i]),
    )
    for (const i of range(1, 5)) {
      const issuance = await statusOf(coupon, `user:${i}`)
      assert.equal(issuance.status, 'ISSUED')
      assert.equal(issuance.position, i)
      assert.ok(issuance.userCouponId !== undefined && issuance.decidedAt !== undefined)
    }
    for (const i of [6, 7]) {
      const issuance = await statusOf(coupon, `user:${i}`)
      assert.equal(issuance.status, 'SOLD_OUT')
      assert.equal(issuance.position, i)
      assert.equal(issuance.userCouponId, undefined)
    }

    assert.equal((await refusal(mode.request(coupon, 'user:8'))).code, 'SOLD_OUT')
    assert.equal(await mode.remaining(coupon), 0)
    assert.deepEqual(await mode.stats(coupon), {
      requested: 8,
      accepted: 7,
      pending: 0,
      issued: 5,
      soldOut: 3,
      remaining: 0,
    })
  })

  it('keeps admitting while stock remains after a drain, and lowers the remaining stock in Redis', async () => {
    const coupon = await queueCoupon(5)
    await requestInOrder(coupon, ['a', 'b', 'c'])
    await scheduler.drainCoupon(coupon)
    assert.equal(await mode.remaining(coupon), 2)
    const late = admitted(await mode.request(coupon, 'd'))
    assert.equal(late.issuance.status, 'PENDING')
    assert.equal(late.issuance.position, 4)
    await scheduler.drainCoupon(coupon)
    assert.equal((await statusOf(coupon, 'd')).status, 'ISSUED')
    assert.equal(await mode.remaining(coupon), 1)
  })

  it('issues exactly the 100 lowest positions out of 3000 concurrent requests from 2500 users', async () => {
    const coupon = await queueCoupon(100)
    const users = range(1, 2500).map((i) => `u${i}`)
    // Every fifth user presses twice, the second press interleaved with everyone else's.
    const presses = [...users, ...users.filter((_, i) => i % 5 === 0)]
      .map((user, i) => ({ user, key: hash(`${user}#${i}`) }))
      .sort((a, b) => a.key - b.key)
      .map((press) => press.user)
    assert.equal(presses.length, 3000)
    const settled = await Promise.all(presses.map((user) => mode.request(coupon, user)))

    const positions = new Map<string, number>()
    let duplicates = 0
    for (const [i, result] of settled.entries()) {
      if (result.kind === 'admitted') {
        assert.equal(result.issuance.status, 'PENDING')
        assert.ok(!positions.has(presses[i]!), `${presses[i]} admitted once`)
        positions.set(presses[i]!, result.issuance.position!)
      } else {
        assert.equal(result.kind, 'alreadyRequested')
        duplicates += 1
      }
    }
    assert.equal(positions.size, 2500)
    assert.equal(duplicates, 500)
    assert.deepEqual(
      [...positions.values()].sort((a, b) => a - b),
      range(1, 2500),
    )

    await scheduler.drainOnce()

    const rows = await issuedRows(env.db, coupon.id)
    assert.equal(rows.length, 100)
    assert.equal(new Set(rows.map((row) => row.user_id)).size, 100)
    const firstHundred = [...positions].sort((a, b) => a[1] - b[1]).slice(0, 100)
    assert.deepEqual(
      rows.map((row) => [row.user_id, row.position]),
      firstHundred,
    )
    await assertEveryoneDecided(coupon, positions, new Set(rows.map((row) => row.user_id)))
    const stats = await mode.stats(coupon)
    assert.equal(stats.pending, 0)
    assert.equal(stats.issued, 100)
    assert.equal(stats.soldOut, 2400)
  })

  it('issues the lowest positions when drains run while requests are still arriving', async () => {
    const coupon = await queueCoupon(100)
    let admitting = true
    const drains = (async () => {
      while (admitting) await scheduler.drainCoupon(coupon)
    })()
    const positions = new Map<string, number>()
    const refusedSoldOut = new Set<string>()
    for (const wave of range(0, 9)) {
      const users = range(1, 200).map((i) => `w${wave}-${i}`)
      const settled = await Promise.all(users.map((user) => mode.request(coupon, user)))
      for (const [i, result] of settled.entries()) {
        if (result.kind === 'admitted') positions.set(users[i]!, result.issuance.position!)
        else {
          assert.equal(result.kind, 'soldOut')
          refusedSoldOut.add(users[i]!)
        }
      }
    }
    admitting = false
    await drains
    await scheduler.drainCoupon(coupon)

    const rows = await issuedRows(env.db, coupon.id)
    assert.equal(rows.length, 100)
    assert.deepEqual(
      rows.map((row) => [row.user_id, row.position]),
      [...positions].sort((a, b) => a[1] - b[1]).slice(0, 100),
    )
    assert.equal(positions.size + refusedSoldOut.size, 2000)
    await assertEveryoneDecided(coupon, positions, new Set(rows.map((row) => row.user_id)))
    for (const user of refusedSoldOut) assert.equal(await mode.status(coupon, user), undefined)
  })

  it('answers a second request ALREADY_REQUESTED with the current issuance, pending then issued', async () => {
    const coupon = await queueCoupon(2)
    await mode.request(coupon, 'alice')
    const whilePending = await refusal(mode.request(coupon, 'alice'))
    assert.equal(whilePending.code, 'ALREADY_REQUESTED')
    const pending = whilePending.issuance!
    assert.equal(pending.status, 'PENDING')
    assert.equal(pending.position, 1)

    await scheduler.drainCoupon(coupon)
    const afterIssue = await refusal(mode.request(coupon, 'alice'))
    assert.equal(afterIssue.code, 'ALREADY_REQUESTED')
    const issued = afterIssue.issuance!
    assert.equal(issued.status, 'ISSUED')
    assert.equal(issued.userCouponId, (await statusOf(coupon, 'alice')).userCouponId)
    assert.equal((await mode.stats(coupon)).accepted, 1)
  })

  it('rebuilds lost Redis state from Postgres: issued users stay ALREADY_REQUESTED and nothing is over-issued', async () => {
    const coupon = await queueCoupon(3)
    await requestInOrder(coupon, ['a', 'b'])
    await scheduler.drainCoupon(coupon)
    const keys = couponKeys(env.redisPrefix, coupon.id)
    await env.redis.del(keys.state, keys.users, keys.queue)

    const again = await refusal(mode.request(coupon, 'a'))
    assert.equal(again.code, 'ALREADY_REQUESTED')
    assert.equal(again.issuance?.status, 'ISSUED')
    await env.redis.del(keys.state, keys.users, keys.queue)
    assert.equal((await statusOf(coupon, 'b')).status, 'ISSUED')

    const answers = await requestInOrder(coupon, ['c', 'd', 'e'])
    assert.deepEqual(
      answers.map((answer) => answer.position),
      [3, 4, 5],
    )
    await scheduler.drainCoupon(coupon)
    const rows = await issuedRows(env.db, coupon.id)
    assert.deepEqual(
      rows.map((row) => row.user_id),
      ['a', 'b', 'c'],
    )
    assert.equal((await statusOf(coupon, 'd')).status, 'SOLD_OUT')
    assert.equal((await statusOf(coupon, 'e')).status, 'SOLD_OUT')
    assert.equal((await refusal(mode.request(coupon, 'f'))).code, 'SOLD_OUT')
    assert.equal((await mode.stats(coupon)).issued, 3)
  })
})

describe('queue drain', () => {
  it('moves users whose rows were committed before a crash to ISSUED without issuing them twice', async () => {
    const coupon = await queueCoupon(5)
    await requestInOrder(
      coupon,
      range(1, 7).map((i) => `user:${i}`),
    )
    const committed = await crashAfterCommit(coupon, 3)

    assert.deepEqual(await scheduler.drainCoupon(coupon), {
      couponId: coupon.id,
      drained: true,
      issued: 5,
      soldOut: 2,
    })
    const rows = await issuedRows(env.db, coupon.id)
    assert.deepEqual(
      rows.map((row) => row.user_id),
      range(1, 5).map((i) => `user:${i}`),
    )
    for (const [userId, rowId] of committed) {
      const issuance = await statusOf(coupon, userId)
      assert.equal(issuance.status, 'ISSUED')
      assert.equal(issuance.userCouponId, rowId)
    }
    assert.equal((await mode.stats(coupon)).issued, 5)
  })

  it('records a crashed batch that used up the stock as ISSUED, not SOLD_OUT, and resolves only the rest', async () => {
    const coupon = await queueCoupon(5)
    await requestInOrder(
      coupon,
      range(1, 7).map((i) => `user:${i}`),
    )
    const committed = await crashAfterCommit(coupon, 5)

    const outcome = await scheduler.drainCoupon(coupon)
    assert.equal(outcome.soldOut, 2)
    assert.equal((await issuedRows(env.db, coupon.id)).length, 5)
    for (const [userId, rowId] of committed) {
      const issuance = await statusOf(coupon, userId)
      assert.equal(issuance.status, 'ISSUED')
      assert.equal(issuance.userCouponId, rowId)
    }
    assert.equal((await statusOf(coupon, 'user:6')).status, 'SOLD_OUT')
    assert.equal((await statusOf(coupon, 'user:7')).status, 'SOLD_OUT')
    assert.deepEqual(await mode.stats(coupon), {
      requested: 7,
      accepted: 7,
      pending: 0,
      issued: 5,
      soldOut: 2,
      remaining: 0,
    })
  })

  it('never over-issues or duplicates when two schedulers drain the same coupon at the same time', async () => {
    const other = await secondContext(env)
    try {
      const coupon = await queueCoupon(50)
      const positions = new Map<string, number>()
      const users = range(1, 200).map((i) => `u${i}`)
      const settled = await Promise.all(users.map((user) => mode.request(coupon, user)))
      for (const [i, answer] of settled.entries())
        positions.set(users[i]!, admitted(answer).issuance.position!)

      // A 1 ms lease lapses at once, so both really drain side by side in small batches.
      const a = queueScheduler(env, { cron: '* * * * * *', batchSize: 7, leaseMs: 1 })
      const b = queueScheduler(other.ctx, { cron: '* * * * * *', batchSize: 7, leaseMs: 1 })
      const queue = couponKeys(env.redisPrefix, coupon.id).queue
      for (let round = 0; round < 200 && (await env.redis.zcard(queue)) > 0; round++) {
        await Promise.all([a.drainCoupon(coupon), b.drainCoupon(coupon), a.drainOnce(), b.drainOnce()])
      }

      const rows = await issuedRows(env.db, coupon.id)
      assert.equal(rows.length, 50)
      assert.equal(new Set(rows.map((row) => row.user_id)).size, 50)
      assert.deepEqual(
        rows.map((row) => [row.user_id, row.position]),
        [...positions].sort((x, y) => x[1] - y[1]).slice(0, 50),
      )
      await assertEveryoneDecided(coupon, positions, new Set(rows.map((row) => row.user_id)))
      const stats = await mode.stats(coupon)
      assert.equal(stats.issued, 50)
      assert.equal(stats.soldOut, 150)
    } finally {
      await other.close()
    }
  })

  it('skips a coupon whose drain lease another process holds', async () => {
    const coupon = await queueCoupon(5)
    await requestInOrder(coupon, ['a', 'b'])
    const lease = couponKeys(env.redisPrefix, coupon.id).drainLease
    await env.redis.set(lease, 'another-process', 'PX', 60_000)

    assert.deepEqual(await scheduler.drainCoupon(coupon), {
      couponId: coupon.id,
      drained: false,
      issued: 0,
      soldOut: 0,
    })
    assert.equal((await statusOf(coupon, 'a')).status, 'PENDING')
    assert.equal(await env.redis.get(lease), 'another-process')

    await env.redis.del(lease)
    assert.equal((await scheduler.drainCoupon(coupon)).issued, 2)
    assert.equal(await env.redis.exists(lease), 0)
  })
})

/** Like a drainer that died right after its commit: the head's rows exist, Redis was never told. */
async function crashAfterCommit(coupon: Coupon, count: number): Promise<Map<string, number>> {
  const keys = couponKeys(env.redisPrefix, coupon.id)
  const head = await env.redis.zrange(keys.queue, 0, count - 1, 'WITHSCORES')
  const requests: IssueRequest[] = []
  for (let i = 0; i < head.length; i += 2) {
    requests.push({ userId: head[i]!, position: Number(head[i + 1]), requestedAt: new Date() })
  }
  const result = await inTransaction(env.db, (client) => issueBatch(client, coupon.id, requests))
  assert.equal(result.issued.length, count)
  return new Map(result.issued.map((row) => [row.userId, row.id]))
}

/** Every admitted user ended ISSUED (with a row) or SOLD_OUT (without one). */
async function assertEveryoneDecided(coupon: Coupon, positions: Map<string, number>, holders: Set<string>) {
  const statuses = await Promise.all([...positions.keys()].map((user) => statusOf(coupon, user)))
  for (const issuance of statuses) {
    assert.equal(issuance.position, positions.get(issuance.userId))
    if (issuance.status === 'ISSUED')
      assert.ok(holders.has(issuance.userId), `${issuance.userId} holds a row`)
    else {
      assert.equal(issuance.status, 'SOLD_OUT', `${issuance.userId} was decided`)
      assert.ok(!holders.has(issuance.userId), `sold-out ${issuance.userId} holds no row`)
    }
  }
  assert.equal(statuses.filter((issuance) => issuance.status === 'ISSUED').length, holders.size)
}

/** Another process's connections to the same schema and key prefix. */
async function secondContext(base: TestEnv): Promise<{ ctx: IssuanceContext; close(): Promise<void> }> {
  const db = createPool({ databaseUrl: TEST_DATABASE_URL, schema: base.schema, max: 5 })
  const redis = createRedis({ url: TEST_REDIS_URL, clusterNodes: [], name: 'second-process' })
  await connectRedis(redis)
  return {
    ctx: { db, redis, redisPrefix: base.redisPrefix, logger: base.logger },
    async close() {
      redis.disconnect()
      await db.end()
    },
  }
}

/** A stable pseudo-random order (FNV-1a), so failures reproduce. */
function hash(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0
  return h
}
