import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createSigner } from 'fast-jwt'
import { runConcurrently, startTestApp, TEST_JWT_SECRET, type TestApp } from './support/app.ts'
import { eventually } from './support/infra.ts'

describe('HTTP API contract', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('api', { RATE_LIMIT_PER_USER: '5', RATE_LIMIT_WINDOW_MS: '60000' })
  })
  after(() => t.close())

  const issued = async (couponId: number, userId: string) => {
    await eventually(
      async () =>
        (await t.http('GET', `/coupons/${couponId}/issuance`, { token: t.tokenFor(userId) })).body.status ===
        'ISSUED',
      `${userId} issued`,
    )
    return (await t.http('GET', `/coupons/${couponId}/issuance`, { token: t.tokenFor(userId) })).body
  }

  describe('issuance answers', () => {
    it('accepts a first request with its position and answers 409 ALREADY_REQUESTED with the status to a second', async () => {
      const coupon = await t.createCoupon({ quantity: 3 })
      const first = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('alice') })
      assert.equal(first.status, 202)
      assert.equal(first.body.status, 'ACCEPTED')
      assert.equal(first.body.position, 1)
      const second = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('alice') })
      assert.equal(second.status, 409)
      assert.equal(second.headers['content-type'], 'application/problem+json; charset=utf-8')
      assert.equal(second.body.code, 'ALREADY_REQUESTED')
      assert.equal((second.body.issuance as { position: number }).position, 1)
      const status = await issued(coupon.id, 'alice')
      assert.equal(typeof status.userCouponId, 'number')
      assert.ok(typeof status.decidedAt === 'string')
    })

    it('answers 410 SOLD_OUT at once when the stock is gone', async () => {
      const coupon = await t.createCoupon({ quantity: 1 })
      assert.equal(
        (await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('bob') })).status,
        202,
      )
      const late = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('carol') })
      assert.equal(late.status, 410)
      assert.equal(late.body.code, 'SOLD_OUT')
      const view = await t.http('GET', `/coupons/${coupon.id}`)
      assert.equal(view.body.remaining, 0)
      assert.equal(view.body.status, 'SOLD_OUT')
      assert.equal(
        (await t.http('GET', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('carol') })).body.code,
        'NOT_REQUESTED',
      )
    })

    it('answers 422 outside the issue window', async () => {
      const later = await t.createCoupon({
        issueStartsAt: new Date(Date.now() + 60_000).toISOString(),
        issueEndsAt: new Date(Date.now() + 120_000).toISOString(),
      })
      const early = await t.http('POST', `/coupons/${later.id}/issuance`, { token: t.tokenFor('dave') })
      assert.equal(early.status, 422)
      assert.equal(early.body.code, 'ISSUE_NOT_STARTED')
      assert.equal((await t.http('GET', `/coupons/${later.id}`)).body.status, 'SCHEDULED')
      const past = await t.createCoupon({
        issueStartsAt: new Date(Date.now() - 120_000).toISOString(),
        issueEndsAt: new Date(Date.now() - 60_000).toISOString(),
      })
      const ended = await t.http('POST', `/coupons/${past.id}/issuance`, { token: t.tokenFor('dave') })
      assert.equal(ended.status, 422)
      assert.equal(ended.body.code, 'ISSUE_ENDED')
    })

    it('answers 404 COUPON_NOT_FOUND for an unknown coupon and 400 for a malformed id', async () => {
      const missing = await t.http('POST', '/coupons/999999/issuance', { token: t.tokenFor('erin') })
      assert.equal(missing.status, 404)
      assert.equal(missing.body.code, 'COUPON_NOT_FOUND')
      const malformed = await t.http('GET', '/coupons/abc')
      assert.equal(malformed.status, 400)
      assert.equal(malformed.body.code, 'VALIDATION_ERROR')
    })

    it('rate-limits one user with 429 RATE_LIMITED and Retry-After', async () => {
      const coupon = await t.createCoupon({ quantity: 100 })
      const answers = await runConcurrently(8, 1, () =>
        t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('hammer') }),
      )
      const limited = answers.filter((a) => a.status === 429)
      assert.equal(limited.length, 3)
      assert.equal(limited[0]!.body.code, 'RATE_LIMITED')
      assert.ok(Number(limited[0]!.headers['retry-after']) >= 1)
    })
  })

  describe('authentication', () => {
    it('answers 401 without a token, with a bad signature, an expired token, another algorithm or a bad subject', async () => {
      const coupon = await t.createCoupon()
      const path = `/coupons/${coupon.id}/issuance`
      const expired = createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256', expiresIn: 1 })({
        sub: 'late',
      })
      await new Promise((resolve) => setTimeout(resolve, 20))
      const tokens = [
        undefined,
        'not-a-jwt',
        createSigner({ key: 'another-secret-another-secret-0123456', algorithm: 'HS256' })({
          sub: 'mallory',
        }),
        expired,
        createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS512' })({ sub: 'mallory' }),
        createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256' })({ sub: 'bad id with spaces' }),
      ]
      for (const token of tokens) {
        const answer = await t.http('POST', path, token === undefined ? {} : { token })
        assert.equal(answer.status, 401, `token ${token}`)
        assert.equal(answer.body.code, 'UNAUTHENTICATED')
      }
    })

    it('answers 403 FORBIDDEN to a user token on admin routes', async () => {
      const answer = await t.http('GET', '/admin/coupons', { token: t.tokenFor('alice') })
      assert.equal(answer.status, 403)
      assert.equal(answer.body.code, 'FORBIDDEN')
    })
  })

  describe('admin coupons', () => {
    it('rejects bad bodies with 400 VALIDATION_ERROR, including unknown fields', async () => {
      const valid = {
        name: 'Ok',
        discount: { type: 'FIXED', amount: 10 },
        quantity: 5,
        issueStartsAt: new Date().toISOString(),
        issueEndsAt: new Date(Date.now() + 60_000).toISOString(),
        validDays: 3,
      }
      const bad = [
        { ...valid, name: '' },
        { ...valid, quantity: 0 },
        { ...valid, quantity: 10_000_001 },
        { ...valid, discount: { type: 'RATE', percent: 101 } },
        { ...valid, discount: { type: 'FIXED', amount: 0 } },
        { ...valid, issueEndsAt: valid.issueStartsAt },
        { ...valid, issueStartsAt: 'yesterday' },
        { ...valid, validDays: undefined },
        { ...valid, issueMode: 'magic' },
        { ...valid, surprise: true },
      ]
      for (const body of bad) {
        const answer = await t.http('POST', '/admin/coupons', { token: t.adminToken, body })
        assert.equal(answer.status, 400, JSON.stringify(body))
        assert.equal(answer.body.code, 'VALIDATION_ERROR')
      }
      const notJson = await t.http('POST', '/admin/coupons', {
        token: t.adminToken,
        headers: { 'content-type': 'application/json' },
        body: undefined,
      })
      assert.equal(notJson.status, 400)
    })

    it('answers 422 MODE_UNAVAILABLE for kafka without KAFKA_BROKERS', async () => {
      const answer = await t.http('POST', '/admin/coupons', {
        token: t.adminToken,
        body: {
          name: 'Kafka',
          discount: { type: 'FIXED', amount: 10 },
          quantity: 5,
          issueStartsAt: new Date().toISOString(),
          issueEndsAt: new Date(Date.now() + 60_000).toISOString(),
          validDays: 3,
          issueMode: 'kafka',
        },
      })
      assert.equal(answer.status, 422)
      assert.equal(answer.body.code, 'MODE_UNAVAILABLE')
    })

    it('lists coupons and shows live stats', async () => {
      const coupon = await t.createCoupon({ quantity: 2 })
      for (const user of ['s1', 's2', 's3'])
        await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(user) })
      await issued(coupon.id, 's2')
      const detail = await t.http('GET', `/admin/coupons/${coupon.id}`, { token: t.adminToken })
      assert.deepEqual(detail.body.stats, {
        requested: 3,
        accepted: 2,
        pending: 0,
        issued: 2,
        soldOut: 1,
        remaining: 0,
      })
      const list = await t.http('GET', '/admin/coupons?limit=500', { token: t.adminToken })
      assert.ok((list.body as unknown as { id: number }[]).some((c) => c.id === coupon.id))
    })
  })

  describe('my coupons and redemption', () => {
    it('lists only my coupons and redeems one once, even under concurrent calls', async () => {
      const coupon = await t.createCoupon({
        quantity: 5,
        discount: { type: 'RATE', percent: 15, maxAmount: 1000 },
      })
      await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('frank') })
      const { userCouponId } = await issued(coupon.id, 'frank')
      const mine = await t.http('GET', '/me/coupons', { token: t.tokenFor('frank') })
      const entry = (mine.body as unknown as Record<string, unknown>[]).find((c) => c.id === userCouponId)!
      assert.equal(entry.status, 'AVAILABLE')
      assert.equal(entry.couponId, coupon.id)
      const theirs = await t.http('GET', '/me/coupons', { token: t.tokenFor('grace') })
      assert.deepEqual(theirs.body, [])

      const stolen = await t.http('POST', `/me/coupons/${userCouponId}/redeem`, {
        token: t.tokenFor('grace'),
        body: { orderId: 'order-1', orderAmount: 5000 },
      })
      assert.equal(stolen.status, 404)
      assert.equal(stolen.body.code, 'USER_COUPON_NOT_FOUND')

      // Ten different orders at once: one wins, the others are told the coupon is taken.
      const attempts = await runConcurrently(10, 10, (index) =>
        t.http('POST', `/me/coupons/${userCouponId}/redeem`, {
          token: t.tokenFor('frank'),
          body: { orderId: `order-${index}`, orderAmount: 5000 },
        }),
      )
      const ok = attempts.filter((a) => a.status === 200)
      assert.equal(ok.length, 1, 'redeemed exactly once')
      assert.deepEqual(
        { ...ok[0]!.body, orderId: undefined, redeemedAt: undefined },
        {
          orderId: undefined,
          orderAmount: 5000,
          discountAmount: 750,
          payAmount: 4250,
          redeemedAt: undefined,
        },
      )
      assert.ok(attempts.filter((a) => a.status === 409).every((a) => a.body.code === 'ALREADY_REDEEMED'))
      const after = await t.http('GET', '/me/coupons', { token: t.tokenFor('frank') })
      assert.equal(
        (after.body as unknown as Record<string, unknown>[]).find((c) => c.id === userCouponId)?.status,
        'REDEEMED',
      )
      const badBody = await t.http('POST', `/me/coupons/${userCouponId}/redeem`, {
        token: t.tokenFor('frank'),
        body: { orderId: 'order-0', orderAmount: 0 },
      })
      assert.equal(badBody.status, 400)
    })

    it('refuses to redeem an expired coupon with 410 COUPON_EXPIRED', async () => {
      const coupon = await t.createCoupon({ quantity: 1 })
      await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('henry') })
      const { userCouponId } = await issued(coupon.id, 'henry')
      await t.env.db.query(`UPDATE user_coupons SET expires_at = now() - interval '1 second' WHERE id = $1`, [
        userCouponId,
      ])
      const answer = await t.http('POST', `/me/coupons/${userCouponId}/redeem`, {
        token: t.tokenFor('henry'),
        body: { orderId: 'order-h', orderAmount: 9000 },
      })
      assert.equal(answer.status, 410)
      assert.equal(answer.body.code, 'COUPON_EXPIRED')
    })
  })

  describe('operations', () => {
    it('serves health, readiness, metrics, the OpenAPI document, its docs page and the dashboard', async () => {
      assert.equal((await t.http('GET', '/healthz')).body.status, 'ok')
      assert.equal((await t.http('GET', '/readyz')).body.status, 'ready')
      const openapi = await t.http('GET', '/openapi.json')
      assert.match(String(openapi.body.openapi), /^3\./)
      assert.ok(Object.keys(openapi.body.paths as object).includes('/coupons/{id}/issuance'))
      const metrics = await fetch(`${t.baseUrl}/metrics`).then((r) => r.text())
      assert.match(metrics, /http_request_duration_seconds_bucket/)
      assert.match(metrics, /coupon_issuance_requests_total\{mode="stream",outcome="ACCEPTED"\}/)
      assert.equal((await fetch(`${t.baseUrl}/docs/`)).status, 200)
      assert.match(await fetch(`${t.baseUrl}/`).then((r) => r.text()), /Coupon Rush/)
      assert.equal((await t.http('GET', '/nope')).status, 404)
    })
  })
})
