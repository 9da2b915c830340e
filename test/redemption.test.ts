/**
 * Redemption follows the order (issue 18 item 4): redeem carries the shop's order id and is idempotent on
 * it, a coupon may ask for a minimum order amount, and a refunded order cancels its redemption, once.
 * Through HTTP against real Postgres; Postgres's own rows are the witness of "exactly one effect".
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { decideCancel, decideRedeem, type RedemptionRecord } from '../src/domain/redemption.ts'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'

interface RedemptionRow {
  order_id: string | null
  order_amount: number
  discount_amount: number
  redeemed_at: Date
  cancelled_at: Date | null
}

describe('redemption following the order', () => {
  let t: TestApp
  let saleId: number
  let users = 0

  before(async () => {
    t = await startTestApp('redeem', { ADDRESS_LIMIT_PER_WINDOW: '100000000' }, { runWorkers: false })
    saleId = (
      await t.createCoupon({
        issueMode: 'sync',
        quantity: 1000,
        discount: { type: 'RATE', percent: 10, maxAmount: 3000 },
      })
    ).id
  })
  after(() => t.close())

  /** A new user holding a freshly issued coupon of `couponId` (sync: issued at once). */
  async function holder(couponId = saleId) {
    const user = `buyer-${++users}`
    const issued = await t.http('POST', `/coupons/${couponId}/issuance`, { token: t.tokenFor(user) })
    assert.equal(issued.status, 201, JSON.stringify(issued.body))
    const userCouponId = Number(issued.body.userCouponId)
    const token = t.tokenFor(user)
    return {
      userCouponId,
      token,
      redeem: (orderId: string, orderAmount: number) =>
        t.http('POST', `/me/coupons/${userCouponId}/redeem`, { token, body: { orderId, orderAmount } }),
      cancel: (orderId: string) =>
        t.http('POST', `/me/coupons/${userCouponId}/redemption/cancel`, { token, body: { orderId } }),
      mine: async () =>
        ((await t.http('GET', '/me/coupons', { token })).body as unknown as Record<string, unknown>[])[0]!,
      rows: async () =>
        (
          await t.env.db.query<RedemptionRow>(
            `SELECT order_id, order_amount, discount_amount, redeemed_at, cancelled_at FROM redemptions
             WHERE user_coupon_id = $1 ORDER BY id`,
            [userCouponId],
          )
        ).rows,
    }
  }

  it('redeems once for the same order id sent concurrently, and answers every call the same', async () => {
    const buyer = await holder()
    const answers = await runConcurrently(8, 8, () => buyer.redeem('order-A', 12_000))
    assert.deepEqual(
      answers.map((answer) => answer.status),
      Array(8).fill(200),
    )
    for (const answer of answers) assert.deepEqual(answer.body, answers[0]!.body)
    assert.equal(answers[0]!.body.discountAmount, 1200)
    assert.equal(answers[0]!.body.payAmount, 10_800)
    assert.equal(answers[0]!.body.orderId, 'order-A')
    const rows = await buyer.rows()
    assert.equal(rows.length, 1, 'one redemption row')
    assert.equal(rows[0]!.redeemed_at.toISOString(), answers[0]!.body.redeemedAt)
    const mine = await buyer.mine()
    assert.equal(mine.status, 'REDEEMED')
    assert.equal(mine.orderId, 'order-A')
    assert.equal(mine.redeemedAt, answers[0]!.body.redeemedAt)
    assert.equal(mine.orderAmount, 12_000)
    assert.equal(mine.discountAmount, 1200)

    const later = await buyer.redeem('order-A', 12_000)
    assert.equal(later.status, 200, 'a retry long after gets the same answer')
    assert.deepEqual(later.body, answers[0]!.body)
  })

  it('refuses another order (409 ALREADY_REDEEMED) and the same order with another amount (409 ORDER_MISMATCH)', async () => {
    const buyer = await holder()
    assert.equal((await buyer.redeem('order-1', 5000)).status, 200)
    const other = await buyer.redeem('order-2', 5000)
    assert.equal(other.status, 409)
    assert.equal(other.body.code, 'ALREADY_REDEEMED')
    const changed = await buyer.redeem('order-1', 6000)
    assert.equal(changed.status, 409)
    assert.equal(changed.body.code, 'ORDER_MISMATCH')
    assert.equal((await buyer.rows()).length, 1)
    assert.equal((await buyer.mine()).orderId, 'order-1')
  })

  it('cancels once under concurrent cancels, making the coupon AVAILABLE; a new order then redeems it', async () => {
    const buyer = await holder()
    const redeemed = await buyer.redeem('order-X', 20_000)
    assert.equal(redeemed.status, 200)
    const cancels = await runConcurrently(6, 6, () => buyer.cancel('order-X'))
    assert.deepEqual(
      cancels.map((answer) => answer.status),
      Array(6).fill(200),
    )
    for (const answer of cancels) assert.deepEqual(answer.body, cancels[0]!.body)
    assert.equal(cancels[0]!.body.status, 'AVAILABLE')
    assert.equal(cancels[0]!.body.redeemedAt, redeemed.body.redeemedAt)
    const rows = await buyer.rows()
    assert.equal(rows.length, 1)
    assert.equal(rows[0]!.cancelled_at?.toISOString(), cancels[0]!.body.cancelledAt)
    let mine = await buyer.mine()
    assert.equal(mine.status, 'AVAILABLE')
    assert.equal(mine.orderId, null)
    assert.equal(mine.redeemedAt, null)
    assert.equal(mine.cancelledAt, cancels[0]!.body.cancelledAt)

    const replayed = await buyer.redeem('order-X', 20_000)
    assert.equal(replayed.status, 409, 'a late retry of the refunded order does not redeem again')
    assert.equal(replayed.body.code, 'REDEMPTION_CANCELLED')
    const again = await buyer.redeem('order-Y', 8000)
    assert.equal(again.status, 200)
    assert.equal(again.body.discountAmount, 800)
    mine = await buyer.mine()
    assert.equal(mine.status, 'REDEEMED')
    assert.equal(mine.orderId, 'order-Y')
    assert.equal(mine.cancelledAt, null)
    const late = await buyer.cancel('order-X')
    assert.equal(late.status, 200, 'the first order’s cancel, retried, is still answered')
    assert.equal(late.body.status, 'REDEEMED')
    assert.equal(late.body.cancelledAt, cancels[0]!.body.cancelledAt)
    assert.deepEqual(
      (await buyer.rows()).map((row) => [row.order_id, row.cancelled_at === null]),
      [
        ['order-X', false],
        ['order-Y', true],
      ],
    )
  })

  it('refuses to cancel another order (409 ORDER_MISMATCH) or an unredeemed coupon (409 NOT_REDEEMED)', async () => {
    const buyer = await holder()
    const unredeemed = await buyer.cancel('order-1')
    assert.equal(unredeemed.status, 409)
    assert.equal(unredeemed.body.code, 'NOT_REDEEMED')
    assert.equal((await buyer.redeem('order-1', 5000)).status, 200)
    const mismatch = await buyer.cancel('order-2')
    assert.equal(mismatch.status, 409)
    assert.equal(mismatch.body.code, 'ORDER_MISMATCH')
    assert.equal((await buyer.mine()).status, 'REDEEMED')
    const stranger = await t.http('POST', `/me/coupons/${buyer.userCouponId}/redemption/cancel`, {
      token: t.tokenFor('stranger'),
      body: { orderId: 'order-1' },
    })
    assert.equal(stranger.status, 404)
    assert.equal(stranger.body.code, 'USER_COUPON_NOT_FOUND')
  })

  it('cancels the redemption of an expired coupon, which stays EXPIRED', async () => {
    const buyer = await holder()
    assert.equal((await buyer.redeem('order-E', 5000)).status, 200)
    await t.env.db.query(`UPDATE user_coupons SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      buyer.userCouponId,
    ])
    const cancelled = await buyer.cancel('order-E')
    assert.equal(cancelled.status, 200)
    assert.equal(cancelled.body.status, 'EXPIRED')
    assert.equal((await buyer.mine()).status, 'EXPIRED')
    const redeem = await buyer.redeem('order-F', 5000)
    assert.equal(redeem.status, 410)
    assert.equal(redeem.body.code, 'COUPON_EXPIRED')
  })

  it('refuses an order below the minimum with 422 ORDER_BELOW_MINIMUM and records nothing', async () => {
    const coupon = await t.createCoupon({ issueMode: 'sync', quantity: 5, minOrderAmount: 30_000 })
    assert.equal(coupon.minOrderAmount, 30_000)
    assert.equal((await t.http('GET', `/coupons/${coupon.id}`)).body.minOrderAmount, 30_000)
    const admin = await t.http('GET', `/admin/coupons/${coupon.id}`, { token: t.adminToken })
    assert.equal(admin.body.minOrderAmount, 30_000)
    const buyer = await holder(coupon.id)
    assert.equal((await buyer.mine()).minOrderAmount, 30_000)

    const below = await runConcurrently(4, 4, () => buyer.redeem('small-order', 29_999))
    for (const answer of below) {
      assert.equal(answer.status, 422)
      assert.equal(answer.body.code, 'ORDER_BELOW_MINIMUM')
      assert.equal(answer.body.minOrderAmount, 30_000)
    }
    assert.deepEqual(await buyer.rows(), [])
    assert.equal((await buyer.mine()).status, 'AVAILABLE')
    const atMinimum = await buyer.redeem('big-order', 30_000)
    assert.equal(atMinimum.status, 200)
    assert.equal(atMinimum.body.payAmount, 25_000, 'FIXED 5000 off 30,000')

    const plain = await t.createCoupon({ issueMode: 'sync' })
    assert.equal(plain.minOrderAmount, null, 'no minimum unless given')
    for (const minOrderAmount of [0, 1.5, '100', 1_000_000_001]) {
      const refused = await t.http('POST', '/admin/coupons', {
        token: t.adminToken,
        body: {
          name: 'Bad minimum',
          discount: { type: 'FIXED', amount: 100 },
          quantity: 1,
          issueStartsAt: new Date().toISOString(),
          issueEndsAt: new Date(Date.now() + 60_000).toISOString(),
          validDays: 1,
          minOrderAmount,
        },
      })
      assert.equal(refused.status, 400, String(minOrderAmount))
      assert.match(String(refused.body.detail), /minOrderAmount/)
    }
  })

  it('refuses bad order ids: missing, empty, over 100 characters, with NUL, not a string', async () => {
    const buyer = await holder()
    const { token } = buyer
    for (const body of [
      { orderAmount: 1000 },
      { orderId: '', orderAmount: 1000 },
      { orderId: 'x'.repeat(101), orderAmount: 1000 },
      { orderId: 'a\u0000b', orderAmount: 1000 },
      { orderId: 42, orderAmount: 1000 },
    ]) {
      const answer = await t.http('POST', `/me/coupons/${buyer.userCouponId}/redeem`, { token, body })
      assert.equal(answer.status, 400, JSON.stringify(body))
      assert.equal(answer.body.code, 'VALIDATION_ERROR')
    }
    for (const body of [{}, { orderId: '' }, { orderId: 'o', extra: 1 }]) {
      const answer = await t.http('POST', `/me/coupons/${buyer.userCouponId}/redemption/cancel`, {
        token,
        body,
      })
      assert.equal(answer.status, 400, JSON.stringify(body))
    }
    assert.equal((await buyer.redeem('x'.repeat(100), 1000)).status, 200)
    assert.equal((await buyer.rows()).length, 1)
  })

  it('property: concurrent mixed redeems and cancels leave exactly the effects answered 2xx', async () => {
    const call = fc.oneof(
      fc.record({
        kind: fc.constant('redeem' as const),
        order: fc.integer({ min: 0, max: 3 }),
        amount: fc.constantFrom(10_000, 20_000),
      }),
      fc.record({ kind: fc.constant('cancel' as const), order: fc.integer({ min: 0, max: 3 }) }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 2, maxLength: 12 }), async (calls) => {
        const buyer = await holder()
        const answers = await Promise.all(
          calls.map((c) =>
            c.kind === 'redeem' ? buyer.redeem(`o${c.order}`, c.amount) : buyer.cancel(`o${c.order}`),
          ),
        )
        const allowed = ['ALREADY_REDEEMED', 'ORDER_MISMATCH', 'NOT_REDEEMED', 'REDEMPTION_CANCELLED']
        for (const answer of answers) {
          assert.ok(
            answer.status === 200 || (answer.status === 409 && allowed.includes(answer.body.code ?? '')),
            `${answer.status} ${JSON.stringify(answer.body)}`,
          )
        }
        const rows = await buyer.rows()
        const rowOf = new Map(rows.map((row) => [row.order_id, row]))
        assert.equal(rowOf.size, rows.length, 'an order redeems a coupon at most once')
        assert.ok(rows.filter((row) => row.cancelled_at === null).length <= 1, 'at most one live redemption')
        // Every row is an effect some call was answered 200 for, and every 200 names a row.
        const redeemedOrders = new Set<string>()
        const cancelledOrders = new Set<string>()
        calls.forEach((c, index) => {
          const answer = answers[index]!
          if (answer.status !== 200) return
          const row = rowOf.get(`o${c.order}`)
          assert.ok(row, `a 200 for o${c.order} left a row`)
          assert.equal(answer.body.redeemedAt, row.redeemed_at.toISOString())
          if (c.kind === 'redeem') {
            redeemedOrders.add(`o${c.order}`)
            assert.equal(answer.body.orderAmount, row.order_amount)
            assert.equal(c.amount, row.order_amount)
          } else {
            cancelledOrders.add(`o${c.order}`)
            assert.equal(answer.body.cancelledAt, row.cancelled_at?.toISOString())
          }
        })
        assert.deepEqual(new Set(rows.map((row) => row.order_id)), redeemedOrders)
        assert.deepEqual(
          new Set(rows.filter((row) => row.cancelled_at !== null).map((row) => row.order_id)),
          cancelledOrders,
        )
        // The user coupon mirrors its live redemption, or the last cancellation.
        const live = rows.find((row) => row.cancelled_at === null)
        const mine = await buyer.mine()
        assert.equal(mine.status, live === undefined ? 'AVAILABLE' : 'REDEEMED')
        assert.equal(mine.orderId, live?.order_id ?? null)
        assert.equal(mine.redeemedAt, live?.redeemed_at.toISOString() ?? null)
        const lastCancelled = rows.at(-1)?.cancelled_at
        assert.equal(mine.cancelledAt, live === undefined ? (lastCancelled?.toISOString() ?? null) : null)
      }),
      { numRuns: 25 },
    )
  })
})

describe('redemption rules (pure)', () => {
  const coupon = {
    discount: { type: 'FIXED' as const, amount: 500 },
    minOrderAmount: 1000,
    expiresAt: new Date(9e15),
  }
  const record = (orderId: string, cancelled = false): RedemptionRecord => ({
    orderId,
    orderAmount: 2000,
    discountAmount: 500,
    redeemedAt: new Date(0),
    cancelledAt: cancelled ? new Date(1) : null,
  })
  const now = new Date()

  it('redeems, replays the same order, and refuses the rest in a fixed order', () => {
    const none = { live: undefined, ofOrder: undefined }
    assert.deepEqual(decideRedeem(coupon, none, { orderId: 'a', orderAmount: 2000 }, now), {
      kind: 'redeem',
      discountAmount: 500,
    })
    const live = record('a')
    assert.equal(
      decideRedeem(coupon, { live, ofOrder: live }, { orderId: 'a', orderAmount: 2000 }, now).kind,
      'replay',
    )
    const codeOf = (run: () => unknown) => {
      try {
        run()
      } catch (error) {
        return (error as { code: string }).code
      }
      return 'none'
    }
    const order = { orderId: 'a', orderAmount: 2000 }
    assert.equal(
      codeOf(() => decideRedeem(coupon, { live, ofOrder: live }, { ...order, orderAmount: 1 }, now)),
      'ORDER_MISMATCH',
    )
    assert.equal(
      codeOf(() => decideRedeem(coupon, { live: record('b'), ofOrder: undefined }, order, now)),
      'ALREADY_REDEEMED',
    )
    assert.equal(
      codeOf(() => decideRedeem(coupon, { live: undefined, ofOrder: record('a', true) }, order, now)),
      'REDEMPTION_CANCELLED',
    )
    assert.equal(
      codeOf(() => decideRedeem({ ...coupon, expiresAt: now }, none, order, now)),
      'COUPON_EXPIRED',
    )
    assert.equal(
      codeOf(() => decideRedeem(coupon, none, { orderId: 'a', orderAmount: 999 }, now)),
      'ORDER_BELOW_MINIMUM',
    )
    assert.equal(
      codeOf(() => decideCancel(none, 'a')),
      'NOT_REDEEMED',
    )
    assert.equal(
      codeOf(() => decideCancel({ live: record('b'), ofOrder: undefined }, 'a')),
      'ORDER_MISMATCH',
    )
    assert.equal(decideCancel({ live, ofOrder: live }, 'a').kind, 'cancel')
    assert.equal(decideCancel({ live: record('b'), ofOrder: record('a', true) }, 'a').kind, 'replay')
  })
})
