import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { signUserToken } from '../src/auth/tokens.ts'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { eventually } from './support/infra.ts'
import { sampleValue } from './support/metrics.ts'
import { type RawAnswer, rawRequest } from './support/raw-http.ts'

describe('the sold-out door: late users of a sold-out coupon answered before routing', () => {
  let t: TestApp
  let nextUser = 0
  let nextAddress = 0
  /** A shopper's press, through the trusted proxy in front of the app: each from an address of its own by default. */
  const press = (
    couponId: number,
    userId = `late-${nextUser++}`,
    { token = t.tokenFor(userId), address = `10.1.${nextAddress >> 8}.${nextAddress++ & 255}` } = {},
  ) =>
    rawRequest(t, 'POST', `/coupons/${couponId}/issuance`, { token, headers: { 'x-forwarded-for': address } })
  const metricsText = async () => (await fetch(`${t.baseUrl}/metrics`)).text()
  const doorAnswers = async () => sampleValue(await metricsText(), 'coupon_sold_out_door_answers_total') ?? 0

  /** The answer without the headers that change with the moment (Date) or the connection. */
  const comparable = (answer: RawAnswer) => {
    const { date, connection, 'keep-alive': keepAlive, ...headers } = answer.headers
    return { status: answer.status, headers, text: answer.text }
  }

  /**
   * Sells a coupon out over HTTP: the first over-quantity answers come from Redis through the route. Then
   * new users press until the door answers one. Returns a 410 the route gave and one the door gave.
   */
  const sellOut = async (quantity: number) => {
    const coupon = await t.createCoupon({ quantity })
    const buyers = Array.from({ length: quantity + 5 }, (_, i) => `buyer-${coupon.id}-${i}`)
    const answers = await runConcurrently(buyers.length, 5, (i) => press(coupon.id, buyers[i]))
    const holders = buyers.filter((_, i) => answers[i]!.status === 202)
    assert.equal(holders.length, quantity)
    const fromRoute = answers.find((a) => a.status === 410)
    assert.ok(fromRoute, 'a 410 from the route')
    let refused = answers.filter((a) => a.status === 410).length
    let fromDoor: RawAnswer | undefined
    await eventually(async () => {
      const before = await doorAnswers()
      const answer = await press(coupon.id)
      assert.equal(answer.status, 410)
      refused += 1
      if ((await doorAnswers()) > before) fromDoor = answer
      return fromDoor !== undefined
    }, 'a refusal answered at the door')
    return { coupon, holders, refused, fromRoute, fromDoor: fromDoor! }
  }

  before(async () => {
    t = await startTestApp('soldoutdoor', {
      // The service's default per-user limit: two requests per window counted in memory, the rest in Redis.
      RATE_LIMIT_PER_USER: '20',
      RATE_LIMIT_WINDOW_MS: '60000',
      // Behind a trusted proxy: the address limit counts X-Forwarded-For, its first 100 in memory.
      TRUST_PROXY: '127.0.0.1',
      ADDRESS_LIMIT_PER_WINDOW: '1000',
      ADDRESS_LIMIT_WINDOW_MS: '60000',
    })
  })
  after(async () => t.close())

  it('gives the very answer of the full route: status, headers and body', async () => {
    const { fromRoute, fromDoor } = await sellOut(3)
    assert.equal(fromDoor.status, 410)
    assert.equal(fromDoor.json?.code, 'SOLD_OUT')
    assert.deepEqual(comparable(fromDoor), comparable(fromRoute))
  })

  it('counts its answers in the issuance outcomes, the route latency and the coupon stats', async () => {
    const { coupon, refused } = await sellOut(2)
    const outcomesBefore = sampleValue(await metricsText(), 'coupon_issuance_requests_total', {
      mode: 'stream',
      outcome: 'SOLD_OUT',
    })
    const latencyLabels = { route: '/coupons/:id/issuance', method: 'POST', status: '410' }
    const latencyBefore = sampleValue(
      await metricsText(),
      'http_request_duration_seconds_count',
      latencyLabels,
    )
    const doorBefore = await doorAnswers()
    const late = await runConcurrently(30, 10, () => press(coupon.id))
    assert.ok(late.every((a) => a.status === 410))
    const text = await metricsText()
    assert.equal(await doorAnswers(), doorBefore + 30, 'all 30 answered at the door')
    assert.equal(
      sampleValue(text, 'coupon_issuance_requests_total', { mode: 'stream', outcome: 'SOLD_OUT' }),
      outcomesBefore! + 30,
    )
    assert.equal(sampleValue(text, 'http_request_duration_seconds_count', latencyLabels), latencyBefore! + 30)
    // Every 410 of this coupon (from Redis, from the memo, from the door) in its soldOut count, once.
    const soldOut = async () => {
      const detail = await t.http('GET', `/admin/coupons/${coupon.id}`, { token: t.adminToken })
      return (detail.body.stats as { soldOut: number }).soldOut
    }
    await eventually(async () => (await soldOut()) === refused + 30, 'door refusals in the stats')
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(await soldOut(), refused + 30, 'nothing counted twice')
  })

  it("answers a double press at the door and counts its answers in the user's limit shared with the route: the 21st press of 20 allowed is 429", async () => {
    const { coupon } = await sellOut(2)
    const userId = `presser-${coupon.id}`
    const doorBefore = await doorAnswers()
    const answers: number[] = []
    for (let i = 0; i < 21; i++) answers.push((await press(coupon.id, userId)).status)
    assert.equal(
      await doorAnswers(),
      doorBefore + 2,
      'the first two presses at the door (the local share of 20), the rest through the route',
    )
    assert.deepEqual(answers, [...Array.from({ length: 20 }, () => 410), 429])
  })

  it("leaves to the route what it must answer: a forged token's 401, a holder's 409, a malformed id's 400", async () => {
    const { coupon, holders } = await sellOut(2)
    const doorBefore = await doorAnswers()
    const forged = await press(coupon.id, 'mallory', {
      token: signUserToken('not-the-secret-not-the-secret-000000', 'mallory'),
    })
    assert.equal(forged.status, 401)
    assert.equal(forged.json?.code, 'UNAUTHENTICATED')
    // The door verified the holder's token and left the request to the route, which takes the user from it.
    const holder = await press(coupon.id, holders[0])
    assert.equal(holder.status, 409)
    assert.equal(holder.json?.code, 'ALREADY_REQUESTED')
    const issuance = holder.json?.issuance as { userId: string; position: number } | undefined
    assert.equal(issuance?.userId, holders[0], "the holder's own request")
    assert.ok((issuance?.position ?? 0) > 0)
    const padded = await rawRequest(t, 'POST', `/coupons/0${coupon.id}/issuance`, {
      token: t.tokenFor('pad'),
    })
    assert.equal(padded.status, 400)
    const noToken = await rawRequest(t, 'POST', `/coupons/${coupon.id}/issuance`)
    assert.equal(noToken.status, 401)
    assert.equal(await doorAnswers(), doorBefore, 'none of them answered at the door')
  })

  it('counts the client address the route counts: the one the trusted proxy forwards', async () => {
    const { coupon } = await sellOut(2)
    const address = '10.9.9.9'
    const doorBefore = await doorAnswers()
    // 100 users behind one address: the address limit's share counted in memory, so all at the door.
    const first = await runConcurrently(100, 10, (i) =>
      press(coupon.id, `shared-${coupon.id}-${i}`, { address }),
    )
    assert.ok(first.every((a) => a.status === 410))
    assert.equal(await doorAnswers(), doorBefore + 100)
    // The 101st request of that address needs Redis: the route answers it, after adding the door's 100.
    const next = await press(coupon.id, `shared-${coupon.id}-100`, { address })
    assert.equal(next.status, 410)
    assert.equal(await doorAnswers(), doorBefore + 100, 'the 101st went through the route')
    // Another address is counted apart: at the door again.
    assert.equal((await press(coupon.id, `apart-${coupon.id}`, { address: '10.9.9.10' })).status, 410)
    assert.equal(await doorAnswers(), doorBefore + 101)
  })
})
