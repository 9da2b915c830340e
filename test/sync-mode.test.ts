import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Issuance } from '../src/domain/coupon.ts'
import type { IssuanceContext } from '../src/issuance/core/context.ts'
import { decodeRecord } from '../src/issuance/core/record.ts'
import { type SyncModeOptions, syncMode } from '../src/issuance/sync/sync-mode.ts'
import { createRedis } from '../src/redis/client.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { createPool } from '../src/storage/postgres.ts'
import { createTestEnv, insertTestCoupon, issuedRows, type TestEnv } from './support/infra.ts'
import { type Admitted, admitted, refusal } from './support/outcomes.ts'

describe('sync mode', () => {
  let env: TestEnv
  const modes: { close(): Promise<void> }[] = []

  function mode(options: Partial<SyncModeOptions> = {}, ctx: IssuanceContext = env) {
    const created = syncMode(ctx, { leaseMs: 5_000, maxWaitMs: 120_000, ...options })
    modes.push(created)
    return created
  }

  before(async () => {
    env = await createTestEnv('sync')
  })

  after(async () => {
    for (const created of modes) await created.close()
    await env.close()
  })

  test('2000 concurrent requests issue exactly the quantity, once per user, to the first users in lock arrival order', async () => {
    const quantity = 50
    const coupon = await insertTestCoupon(env.db, { quantity, issueMode: 'sync' })
    const firstArrival = new Map<string, number>()
    const sync = mode({
      onLockGranted: ({ userId, arrival }) => {
        firstArrival.set(userId, Math.min(arrival, firstArrival.get(userId) ?? Number.POSITIVE_INFINITY))
      },
    })
    await sync.prepare(coupon)

    // 1500 users, 500 of whom press twice, in a shuffled order.
    const presses = Array.from({ length: 2000 }, (_, i) => `user-${i % 1500}`)
    for (let i = presses.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1))
      ;[presses[i], presses[j]] = [presses[j]!, presses[i]!]
    }
    type Outcome = { userId: string; answer?: Admitted; code?: string; issuance?: unknown }
    const outcomes: Outcome[] = await Promise.all(
      presses.map(async (userId) => {
        const outcome = await sync.request(coupon, userId)
        if (outcome.kind === 'admitted') return { userId, answer: outcome }
        const { code, issuance } = await refusal(Promise.resolve(outcome))
        return { userId, code, issuance }
      }),
    )

    const issuedAnswers = outcomes.filter((o) => o.answer !== undefined)
    const soldOut = outcomes.filter((o) => o.code === 'SOLD_OUT')
    const duplicates = outcomes.filter((o) => o.code === 'ALREADY_REQUESTED')
    assert.equal(issuedAnswers.length + soldOut.length + duplicates.length, presses.length, 'no other answer')
    assert.equal(issuedAnswers.length, quantity)
    assert.ok(
      issuedAnswers.every((o) => o.answer!.httpStatus === 201 && o.answer!.issuance.status === 'ISSUED'),
    )

    const rows = await issuedRows(env.db, coupon.id)
    assert.equal(rows.length, quantity)
    assert.equal(new Set(rows.map((row) => row.user_id)).size, quantity, 'no user holds two rows')
    assert.deepEqual(
      rows.map((row) => row.position),
      Array.from({ length: quantity }, (_, i) => i + 1),
    )
    const rowOf = new Map(rows.map((row) => [row.user_id, row]))
    for (const { userId, answer } of issuedAnswers) {
      assert.equal(
        rowOf.get(userId)?.position,
        answer!.issuance.position,
        `${userId} holds the row it was told of`,
      )
    }
    for (const { userId } of soldOut)
      assert.equal(rowOf.has(userId), false, `SOLD_OUT ${userId} holds no row`)
    // Only a winner's second press is a duplicate; a sold-out user pressing again is sold out again.
    for (const { userId, issuance } of duplicates) {
      assert.equal((issuance as Issuance).status, 'ISSUED')
      assert.equal((issuance as Issuance).position, rowOf.get(userId)?.position)
    }
    assert.equal(new Set(issuedAnswers.map((o) => o.userId)).size, quantity, 'no user answered 201 twice')

    // FCFS: the winners are the users whose first press reached the lock line first, in that order.
    const byArrival = [...firstArrival].sort((a, b) => a[1] - b[1]).map(([userId]) => userId)
    assert.equal(firstArrival.size, 1500)
    assert.deepEqual(
      rows.map((row) => row.user_id),
      byArrival.slice(0, quantity),
    )

    const stats = await sync.stats(coupon)
    assert.deepEqual(stats, {
      requested: quantity + soldOut.length,
      accepted: quantity,
      pending: 0,
      issued: quantity,
      soldOut: soldOut.length,
      remaining: 0,
    })
    assert.equal(await sync.remaining(coupon), 0)
    const records = Object.values(await env.redis.hgetall(couponKeys(env.redisPrefix, coupon.id).users))
    assert.equal(records.map(decodeRecord).filter((r) => r.status === 'ISSUED').length, quantity)
  })

  test('an issued user asking again gets ALREADY_REQUESTED with their current issuance, and status reads it back', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 5, issueMode: 'sync' })
    const sync = mode()
    await sync.prepare(coupon)

    const first = admitted(await sync.request(coupon, 'alice'))
    assert.equal(first.httpStatus, 201)
    assert.equal(first.issuance.status, 'ISSUED')
    assert.equal(first.issuance.position, 1)
    assert.equal(first.issuance.couponId, coupon.id)
    assert.equal(first.issuance.userId, 'alice')
    assert.equal(typeof first.issuance.userCouponId, 'number')

    const again = await refusal(sync.request(coupon, 'alice'))
    assert.equal(again.code, 'ALREADY_REQUESTED')
    assert.equal(again.status, 409)
    assert.deepEqual(again.issuance, first.issuance)
    assert.deepEqual(await sync.status(coupon, 'alice'), first.issuance)
    assert.equal(await sync.status(coupon, 'bob'), undefined)
    assert.equal(await sync.remaining(coupon), 4)
    assert.equal((await issuedRows(env.db, coupon.id)).length, 1)
  })

  test('the request after the last unit gets SOLD_OUT and no row', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 1, issueMode: 'sync' })
    const sync = mode()
    await sync.prepare(coupon)

    assert.equal(admitted(await sync.request(coupon, 'first')).httpStatus, 201)
    const second = await refusal(sync.request(coupon, 'second'))
    assert.equal(second.code, 'SOLD_OUT')
    assert.equal(second.status, 410)
    assert.deepEqual(
      (await issuedRows(env.db, coupon.id)).map((row) => row.user_id),
      ['first'],
    )
    assert.equal(await sync.status(coupon, 'second'), undefined)
  })

  test('outside the issue window requests are refused with ISSUE_NOT_STARTED or ISSUE_ENDED and issue nothing', async () => {
    const sync = mode()
    const early = await insertTestCoupon(env.db, {
      issueMode: 'sync',
      startsInMs: 3_600_000,
      endsInMs: 7_200_000,
    })
    const late = await insertTestCoupon(env.db, {
      issueMode: 'sync',
      startsInMs: -7_200_000,
      endsInMs: -3_600_000,
    })
    await sync.prepare(early)
    await sync.prepare(late)

    await assert.rejects(sync.request(early, 'carol'), { code: 'ISSUE_NOT_STARTED' })
    await assert.rejects(sync.request(late, 'carol'), { code: 'ISSUE_ENDED' })
    assert.equal((await issuedRows(env.db, early.id)).length, 0)
    assert.equal((await issuedRows(env.db, late.id)).length, 0)
    assert.equal(
      await env.redis.exists(couponKeys(env.redisPrefix, early.id).lock),
      0,
      'the lock was released',
    )
  })

  test('with Redis unreachable a request fails instead of answering 2xx, and issues nothing', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 5, issueMode: 'sync' })
    const deadRedis = createRedis({ url: 'redis://127.0.0.1:1', clusterNodes: [] })
    const sync = mode({}, { ...env, redis: deadRedis })
    try {
      await assert.rejects(sync.request(coupon, 'dave'))
    } finally {
      deadRedis.disconnect()
    }
    assert.equal((await issuedRows(env.db, coupon.id)).length, 0)
  })

  test('with Postgres unreachable a request fails instead of answering 2xx, and the lock is freed', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 5, issueMode: 'sync' })
    await mode().prepare(coupon)
    const deadDb = createPool({ databaseUrl: 'postgres://postgres@127.0.0.1:1/none', schema: env.schema })
    const sync = mode({}, { ...env, db: deadDb })
    try {
      await assert.rejects(sync.request(coupon, 'erin'))
    } finally {
      await deadDb.end()
    }
    const keys = couponKeys(env.redisPrefix, coupon.id)
    assert.equal(await env.redis.exists(keys.lock), 0)
    assert.equal(await env.redis.zcard(keys.lockWaiters), 0)
    // The next request is served at once by the healthy process.
    assert.equal(admitted(await mode().request(coupon, 'erin')).httpStatus, 201)
  })
})
