import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { eventually, issuedRows, TEST_REDIS_ADDRESS } from './support/infra.ts'
import { TcpProxy } from './support/tcp-proxy.ts'

describe('when Postgres goes away (stream mode)', () => {
  let t: TestApp
  let proxy: TcpProxy
  before(async () => {
    proxy = await new TcpProxy('127.0.0.1', 5432).start()
    t = await startTestApp('pgdown', {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${proxy.port}/coupon_rush_test`,
      STREAM_RECLAIM_IDLE_MS: '300',
      STREAM_MAX_DELIVERIES: '2',
    })
  })
  after(async () => {
    await t.close()
    await proxy.close()
  })

  it('keeps answering admissions from Redis and drains the backlog once Postgres is back', async () => {
    const coupon = await t.createCoupon({ quantity: 60 })
    // Warm the coupon cache, then cut Postgres off from the app.
    assert.equal((await t.http('GET', `/coupons/${coupon.id}`)).status, 200)
    proxy.cut()
    const answers = await runConcurrently(100, 20, (i) =>
      t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(`pg-${i}`) }),
    )
    assert.equal(
      answers.filter((a) => a.status === 202).length,
      60,
      'admissions answered while Postgres is down',
    )
    assert.equal(answers.filter((a) => a.status === 410).length, 40)
    const ready = await t.http('GET', '/readyz')
    assert.equal(ready.status, 503)
    assert.equal(ready.headers['retry-after'], '1')
    assert.equal(
      (await issuedRows(t.env.db, coupon.id)).length,
      0,
      'nothing written while Postgres is unreachable',
    )
    // Stay down for many reclaim periods: an outage must not walk accepted requests to the dead letters.
    await new Promise((resolve) => setTimeout(resolve, 2_500))
    proxy.restore()
    await eventually(
      async () => (await issuedRows(t.env.db, coupon.id)).length === 60,
      'backlog drained after Postgres returned',
    )
    const rows = await issuedRows(t.env.db, coupon.id)
    assert.equal(new Set(rows.map((r) => r.user_id)).size, 60)
    const audit = await t.http('GET', `/admin/coupons/${coupon.id}/audit`, { token: t.adminToken })
    assert.equal(audit.body.deadLettered, 0)
    assert.deepEqual(audit.body.inconsistencies, [])
  })

  it('answers 503 with Retry-After, never a 2xx, for what needs Postgres while it is down', async () => {
    const coupon = await t.createCoupon({ quantity: 5, issueMode: 'stream' })
    proxy.cut()
    try {
      const created = await t.http('POST', '/admin/coupons', {
        token: t.adminToken,
        body: {
          name: 'During outage',
          discount: { type: 'FIXED', amount: 100 },
          quantity: 5,
          issueStartsAt: new Date().toISOString(),
          issueEndsAt: new Date(Date.now() + 60_000).toISOString(),
          validDays: 1,
        },
      })
      assert.equal(created.status, 503)
      assert.equal(created.body.code, 'UNAVAILABLE')
      assert.ok(Number(created.headers['retry-after']) >= 1)
      const mine = await t.http('GET', '/me/coupons', { token: t.tokenFor('someone') })
      assert.equal(mine.status, 503)
      assert.equal(JSON.stringify(mine.body).includes('ECONNREFUSED'), false, 'no internals leak')
    } finally {
      proxy.restore()
    }
    assert.equal((await t.http('GET', `/coupons/${coupon.id}`)).status, 200)
  })
})

describe('when Redis goes away', () => {
  let t: TestApp
  let proxy: TcpProxy
  before(async () => {
    proxy = await new TcpProxy(TEST_REDIS_ADDRESS.host, TEST_REDIS_ADDRESS.port).start()
    t = await startTestApp('redisdown', { REDIS_URL: `redis://127.0.0.1:${proxy.port}` })
  })
  after(async () => {
    await t.close()
    await proxy.close()
  })

  for (const issueMode of ['stream', 'queue', 'sync'] as const) {
    it(`answers 503 with Retry-After and never a 2xx in ${issueMode} mode`, async (ctx) => {
      const coupon = await t.createCoupon({ quantity: 5, issueMode }).catch((error: Error) => error)
      if (coupon instanceof Error) {
        if (coupon.message.includes('MODE_UNAVAILABLE')) return ctx.skip(`${issueMode} mode is not enabled`)
        throw coupon
      }
      proxy.cut()
      try {
        const answers = await runConcurrently(20, 10, (i) =>
          t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(`r-${i}`) }),
        )
        assert.ok(
          answers.every((a) => a.status === 503),
          `all 503, got ${answers.map((a) => a.status).join(',')}`,
        )
        assert.ok(answers.every((a) => Number(a.headers['retry-after']) >= 1))
        assert.ok(answers.every((a) => a.body.code === 'UNAVAILABLE'))
      } finally {
        proxy.restore()
      }
      await eventually(async () => (await t.http('GET', '/readyz')).status === 200, 'Redis reconnects')
      assert.equal((await issuedRows(t.env.db, coupon.id)).length, 0, 'nothing was issued during the outage')
    })
  }
})
