/**
 * The bench's writer floor (bench/lib/writer-floor.ts) against the real Postgres and Redis: it writes every
 * row it times with the writers' own insert, reads and trims every stream entry it times, and leaves no key.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { measureWriterFloor } from '../bench/lib/writer-floor.ts'
import { createTestEnv, insertTestCoupon, TEST_DATABASE_URL, type TestEnv } from './support/infra.ts'

describe("the bench's writer floor", () => {
  let env: TestEnv
  let redisPid: number
  before(async () => {
    env = await createTestEnv('floor')
    redisPid = Number(/process_id:(\d+)/.exec(await env.redis.info('server'))?.[1])
  })
  after(() => env.close())

  const measure = (couponId: number, rows: number) =>
    measureWriterFloor({
      databaseUrl: TEST_DATABASE_URL,
      schema: env.schema,
      couponId,
      rows,
      redis: env.redis as Redis,
      redisPid,
      prefix: env.redisPrefix,
    })

  it('writes every timed row with the writers insert, in batches of the writers size, and trims the stream', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 5_000 })
    const floor = await measure(coupon.id, 4_500)
    assert.equal(floor.rows, 4_500)
    assert.equal(floor.batchSize, 2_000)
    const { rows } = await env.db.query<{ rows: number; first: string; last: string; issued: number }>(
      `SELECT count(*)::int AS rows, min(position)::text AS first, max(position)::text AS last,
              (SELECT issued_count FROM coupons WHERE id = $1) AS issued
       FROM user_coupons WHERE coupon_id = $1`,
      [coupon.id],
    )
    assert.deepEqual(rows[0], { rows: 4_500, first: '1', last: '4500', issued: 4_500 })
    assert.ok(floor.postgres.rowsPerSecond > 0 && floor.postgres.microsPerRow >= 0)
    assert.ok(floor.redis !== undefined && floor.redis.rowsPerSecond > 0)
    assert.deepEqual(await env.redis.keys(`${env.redisPrefix}*`), [], 'the stream is removed')
  })

  it('fails rather than time a batch the coupon has no stock for', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 3_000 })
    await assert.rejects(measure(coupon.id, 4_000), /a fresh batch was refused/)
  })
})
