import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CouponCache } from '../src/issuance/plumbing/coupon-cache.ts'
import { createPool } from '../src/storage/postgres.ts'
import { createTestEnv, insertTestCoupon, TEST_DATABASE_URL, type TestEnv } from './support/infra.ts'
import { TcpProxy } from './support/tcp-proxy.ts'

describe('coupon cache', () => {
  let env: TestEnv
  before(async () => {
    env = await createTestEnv('cache')
  })
  after(() => env.close())

  it('serves a stale coupon while Postgres is unreachable and forgets unknown ids', async () => {
    const coupon = await insertTestCoupon(env.db)
    const proxy = await new TcpProxy('127.0.0.1', 5432).start()
    const url = new URL(TEST_DATABASE_URL)
    url.port = String(proxy.port)
    const db = createPool({ databaseUrl: url.toString(), schema: env.schema, max: 2 })
    try {
      const cache = new CouponCache(db, 0)
      assert.equal((await cache.get(coupon.id))?.id, coupon.id)
      assert.equal(await cache.get(999_999), undefined)
      proxy.cut()
      // Expired (ttl 0) and Postgres gone: still answered from memory.
      for (let i = 0; i < 3; i++) assert.equal((await cache.get(coupon.id))?.name, coupon.name)
      await assert.rejects(cache.get(999_999))
      cache.invalidate(coupon.id)
      await assert.rejects(cache.get(coupon.id), 'an invalidated coupon is read again')
    } finally {
      proxy.restore()
      await db.end()
      await proxy.close()
    }
  })
})
