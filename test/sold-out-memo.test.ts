import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CouponStates } from '../src/issuance/core/coupon-state.ts'
import { soldOutSource } from '../src/issuance/core/redis-first.ts'
import { SoldOutMemo } from '../src/issuance/core/sold-out-memo.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { createTestEnv, eventually, issuedRows, TEST_REDIS_ADDRESS, type TestEnv } from './support/infra.ts'
import { TcpProxy } from './support/tcp-proxy.ts'

describe('refusing from memory once a coupon is sold out (stream mode)', () => {
  let t: TestApp
  let redisProxy: TcpProxy
  let nextUser = 0
  const press = (couponId: number, userId = `late-${nextUser++}`) =>
    t.http('POST', `/coupons/${couponId}/issuance`, { token: t.tokenFor(userId) })

  /** The app's own count of refusals given from memory, read from /metrics. */
  const refusedFromMemory = async () => {
    const response = await fetch(`${t.baseUrl}/metrics`)
    const line = (await response.text())
      .split('\n')
      .find((l) => l.startsWith('coupon_sold_out_from_memory_total'))
    return Number(line?.split(' ')[1] ?? 0)
  }

  /** Sells the coupon out over HTTP, then presses with new users until this process refuses from memory. */
  const sellOut = async (quantity: number) => {
    const coupon = await t.createCoupon({ quantity })
    const answers = await runConcurrently(quantity + 10, 10, (i) =>
      press(coupon.id, `buyer-${coupon.id}-${i}`),
    )
    assert.equal(answers.filter((a) => a.status === 202).length, quantity)
    assert.equal(answers.filter((a) => a.status === 410).length, 10)
    let refused = 10
    const before = await refusedFromMemory()
    await eventually(async () => {
      assert.equal((await press(coupon.id)).status, 410)
      refused += 1
      return (await refusedFromMemory()) > before
    }, 'refusals answered from memory')
    return { coupon, refused }
  }

  /** New users press until one is admitted (a unit came back); that user's id. */
  const pressUntilAdmitted = async (couponId: number) => {
    let admitted: string | undefined
    await eventually(async () => {
      const userId = `late-${nextUser++}`
      if ((await press(couponId, userId)).status === 202) admitted = userId
      return admitted !== undefined
    }, 'a new user admitted')
    return admitted
  }

  before(async () => {
    redisProxy = await new TcpProxy(TEST_REDIS_ADDRESS.host, TEST_REDIS_ADDRESS.port).start()
    t = await startTestApp('soldoutmemo', { REDIS_URL: `redis://127.0.0.1:${redisProxy.port}` })
  })
  after(async () => {
    await t.close()
    await redisProxy.close()
  })

  it('refuses new users without Redis, while a holder pressing again still gets their 409 from Redis', async () => {
    const { coupon } = await sellOut(5)
    redisProxy.cut()
    try {
      const late = await runConcurrently(50, 10, () => press(coupon.id))
      assert.deepEqual(
        late.map((a) => [a.status, a.body.code]),
        Array.from({ length: 50 }, () => [410, 'SOLD_OUT']),
        'every new user refused with Redis unreachable',
      )
      // A holder is never refused from memory: their answer needs Redis, which is away.
      const holder = await press(coupon.id, `buyer-${coupon.id}-0`)
      assert.equal(holder.status, 503)
    } finally {
      redisProxy.restore()
    }
    await eventually(
      async () => (await press(coupon.id, `buyer-${coupon.id}-0`)).status === 409,
      'Redis back',
    )
    const again = await press(coupon.id, `buyer-${coupon.id}-0`)
    assert.equal(again.body.code, 'ALREADY_REQUESTED')
    assert.equal((again.body.issuance as { position: number }).position > 0, true)
    await eventually(async () => (await issuedRows(t.env.db, coupon.id)).length === 5, 'rows written')
    const rows = await issuedRows(t.env.db, coupon.id)
    assert.ok(
      rows.every((row) => row.user_id.startsWith(`buyer-${coupon.id}-`)),
      'no late user holds a row',
    )
  })

  it('adds every refusal answered from memory to the coupon stats', async () => {
    const { coupon, refused } = await sellOut(3)
    const late = await runConcurrently(40, 10, () => press(coupon.id))
    assert.ok(late.every((a) => a.status === 410))
    // Refusals from Redis and from memory alike, each counted once.
    let stats: Record<string, number> = {}
    await eventually(async () => {
      const detail = await t.http('GET', `/admin/coupons/${coupon.id}`, { token: t.adminToken })
      stats = detail.body.stats as Record<string, number>
      return stats.soldOut === refused + 40
    }, 'refusals counted in soldOut')
    await new Promise((resolve) => setTimeout(resolve, 300))
    const detail = await t.http('GET', `/admin/coupons/${coupon.id}`, { token: t.adminToken })
    assert.equal((detail.body.stats as Record<string, number>).soldOut, refused + 40, 'nothing counted twice')
    assert.equal(stats.accepted, 3)
  })

  it('asks Redis again once stock shows up there, and admits exactly that stock', async () => {
    const { coupon } = await sellOut(2)
    // An operator adds a unit by hand, in Postgres and Redis, without announcing the change.
    await t.env.db.query('UPDATE coupons SET quantity = quantity + 1 WHERE id = $1', [coupon.id])
    await t.env.redis.hincrby(couponKeys(t.env.redisPrefix, coupon.id).state, 'stock', 1)
    const admitted = await pressUntilAdmitted(coupon.id)
    const after = await runConcurrently(20, 10, () => press(coupon.id))
    assert.ok(
      after.every((a) => a.status === 410),
      'sold out again after the one unit',
    )
    await eventually(async () => (await issuedRows(t.env.db, coupon.id)).length === 3, 'rows written')
    assert.ok((await issuedRows(t.env.db, coupon.id)).some((row) => row.user_id === admitted))
  })

  it('forgets a sold-out coupon whose Redis state was lost, and admits what the rebuild finds', async () => {
    const { coupon } = await sellOut(2)
    await eventually(async () => (await issuedRows(t.env.db, coupon.id)).length === 2, 'rows written')
    // An operator raises the quantity in Postgres and drops the Redis state so that it is rebuilt.
    await t.env.db.query('UPDATE coupons SET quantity = quantity + 1 WHERE id = $1', [coupon.id])
    await t.env.redis.del(couponKeys(t.env.redisPrefix, coupon.id).state)
    const admitted = await pressUntilAdmitted(coupon.id)
    const holder = await press(coupon.id, `buyer-${coupon.id}-1`)
    assert.equal(holder.status, 409, 'holders kept through the rebuild')
    assert.ok((await runConcurrently(20, 10, () => press(coupon.id))).every((a) => a.status === 410))
    await eventually(async () => (await issuedRows(t.env.db, coupon.id)).length === 3, 'rows written')
    assert.ok((await issuedRows(t.env.db, coupon.id)).some((row) => row.user_id === admitted))
  })
})

describe('the sold-out memo of one process (real Redis)', () => {
  let env: TestEnv
  before(async () => {
    env = await createTestEnv('memo')
  })
  after(() => env.close())

  /** A coupon's Redis state: sold out, with these users holding a request. */
  const soldOutCoupon = async (couponId: number, holders: string[]) => {
    const keys = couponKeys(env.redisPrefix, couponId)
    await env.redis.hset(keys.state, 'stock', 0, 'seq', holders.length, 'soldOut', 0)
    for (const [i, user] of holders.entries()) await env.redis.hset(keys.users, user, `A|${i + 1}|0||`)
  }

  it('refuses only non-holders, counts them in Redis, and forgets a coupon nobody asks for', async () => {
    await soldOutCoupon(7, ['ann', 'bob'])
    const memo = new SoldOutMemo(soldOutSource(new CouponStates(env)), env.logger, {
      flushEveryMs: 20,
      recheckEveryMs: 50,
      idleChecks: 3,
    })
    try {
      assert.equal(memo.refuses(7, 'carl'), false, 'nothing known before a SOLD_OUT')
      memo.noteSoldOut(7)
      await eventually(async () => memo.refuses(7, 'carl'), 'holders loaded')
      assert.equal(memo.refuses(7, 'ann'), false, 'a holder goes to Redis')
      assert.equal(memo.refuses(7, 'dave'), true)
      await eventually(
        async () => (await env.redis.hget(couponKeys(env.redisPrefix, 7).state, 'soldOut')) === '2',
        'both refusals added to soldOut',
      )
      // Nobody asks during three checks in a row (asking would keep it): the memo goes.
      await new Promise((resolve) => setTimeout(resolve, 600))
      assert.equal(memo.refuses(7, 'erin'), false, 'idle memo dropped')
    } finally {
      await memo.close()
    }
  })

  it('keeps no holders for a coupon with more of them than it may keep', async () => {
    await soldOutCoupon(8, ['u1', 'u2', 'u3'])
    const memo = new SoldOutMemo(soldOutSource(new CouponStates(env)), env.logger, { maxHolders: 2 })
    try {
      memo.noteSoldOut(8)
      await new Promise((resolve) => setTimeout(resolve, 200))
      assert.equal(memo.refuses(8, 'outsider'), false, 'every request still goes to Redis')
    } finally {
      await memo.close()
    }
  })
})
