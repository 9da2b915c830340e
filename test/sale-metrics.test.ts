import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { couponKeys } from '../src/redis/keys.ts'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { metricFamilies, sampleValue } from './support/metrics.ts'

async function scrape(t: TestApp): Promise<string> {
  const response = await fetch(`${t.baseUrl}/metrics`)
  assert.equal(response.status, 200)
  return response.text()
}

describe('per-sale figures in /metrics', () => {
  let t: TestApp

  // No workers in this process: accepted requests stay in the stream, as when the writers are stopped.
  before(async () => {
    t = await startTestApp('salemetrics', { METRICS_SALES_MAX: '2' }, { runWorkers: false })
  })
  after(() => t.close())

  it("reports a sale's counts and how long its oldest accepted request has waited for its row", async () => {
    const coupon = await t.createCoupon({ quantity: 5 })
    const answers = await runConcurrently(8, 4, (i) =>
      t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(`m${i}`) }),
    )
    assert.deepEqual(answers.map((answer) => answer.status).sort(), [202, 202, 202, 202, 202, 410, 410, 410])
    await new Promise((resolve) => setTimeout(resolve, 1_100))
    const text = await scrape(t)
    const sale = { coupon_id: String(coupon.id), mode: 'stream' }
    assert.equal(sampleValue(text, 'coupon_sale_quantity', sale), 5)
    assert.equal(sampleValue(text, 'coupon_sale_requested', sale), 8)
    assert.equal(sampleValue(text, 'coupon_sale_accepted', sale), 5)
    assert.equal(sampleValue(text, 'coupon_sale_pending', sale), 5)
    assert.equal(sampleValue(text, 'coupon_sale_issued', sale), 0)
    assert.equal(sampleValue(text, 'coupon_sale_sold_out', sale), 3)
    assert.equal(sampleValue(text, 'coupon_sale_remaining', sale), 0)
    assert.equal(sampleValue(text, 'coupon_sale_dead_letters', sale), 0)
    const age = sampleValue(text, 'coupon_sale_oldest_unwritten_age_seconds', sale)
    assert.ok(age !== undefined && age >= 1 && age < 30, `oldest unwritten age ${age}`)
    // Only the kafka mode has a relay.
    assert.equal(sampleValue(text, 'coupon_sale_oldest_unrelayed_age_seconds', sale), undefined)
  })

  it("counts a sale's dead-lettered requests", async () => {
    const coupon = await t.createCoupon({ quantity: 5 })
    // What the writers do after STREAM_MAX_DELIVERIES failed tries (stream-drainer.ts): the entry moves here.
    await t.env.redis.xadd(couponKeys(t.env.redisPrefix, coupon.id).deadLetters, '*', 'u', 'lost', 'p', '1')
    const text = await scrape(t)
    assert.equal(sampleValue(text, 'coupon_sale_dead_letters', { coupon_id: String(coupon.id) }), 1)
    assert.equal(
      sampleValue(text, 'coupon_sale_oldest_unwritten_age_seconds', { coupon_id: String(coupon.id) }),
      0,
    )
  })

  it('reports only the newest METRICS_SALES_MAX open sales, and counts the others, leaving out closed ones', async () => {
    const closed = await t.createCoupon({
      issueStartsAt: new Date(Date.now() - 7_200_000).toISOString(),
      issueEndsAt: new Date(Date.now() - 3_700_000).toISOString(),
    })
    const open = [await t.createCoupon(), await t.createCoupon()]
    const text = await scrape(t)
    const reported = [...text.matchAll(/^coupon_sale_quantity\{coupon_id="(\d+)"/gm)].map((m) => Number(m[1]))
    assert.deepEqual(
      reported.sort((a, b) => a - b),
      open.map((coupon) => coupon.id),
    )
    assert.ok(!reported.includes(closed.id))
    // The two sales of the tests above are open too.
    assert.equal(sampleValue(text, 'coupon_sale_metrics_left_out'), 2)
    assert.equal(metricFamilies(text).get('coupon_sale_oldest_unrelayed_age_seconds'), 'gauge')
  })
})

describe('per-sale figures of a kafka sale in /metrics', () => {
  let t: TestApp

  // No relay in this process: the test plays the relay group's part by hand, as far as the probe sees it.
  before(async () => {
    t = await startTestApp(
      'kafkametrics',
      { KAFKA_BROKERS: process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092' },
      { runWorkers: false },
    )
  })
  after(() => t.close())

  it('tells the oldest request the relay has not moved to Kafka from the oldest without a row', async () => {
    const coupon = await t.createCoupon({ quantity: 5, issueMode: 'kafka' })
    const sale = { coupon_id: String(coupon.id), mode: 'kafka' }
    const stream = couponKeys(t.env.redisPrefix, coupon.id).stream
    const admit = async (userId: string) =>
      assert.equal(
        (await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(userId) })).status,
        202,
      )
    await admit('k0')
    await admit('k1')
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    await admit('k2')

    // Nothing relayed yet: both ages are the first request's.
    let text = await scrape(t)
    const unwritten = sampleValue(text, 'coupon_sale_oldest_unwritten_age_seconds', sale)
    assert.ok(unwritten !== undefined && unwritten >= 1.5, `unwritten ${unwritten}`)
    assert.equal(sampleValue(text, 'coupon_sale_oldest_unrelayed_age_seconds', sale), unwritten)

    // The relay group takes the first two and acknowledges them (on Kafka); the entries stay until the
    // Kafka consumers have written the rows.
    await t.env.redis.xgroup('CREATE', stream, 'relay', '0', 'MKSTREAM').catch(() => {})
    const read = (await t.env.redis.xreadgroup(
      'GROUP',
      'relay',
      'test',
      'COUNT',
      2,
      'STREAMS',
      stream,
      '>',
    )) as [string, [string, string[]][]][]
    await t.env.redis.xack(stream, 'relay', ...read[0]![1].map(([id]) => id))
    text = await scrape(t)
    const unrelayed = sampleValue(text, 'coupon_sale_oldest_unrelayed_age_seconds', sale)
    assert.ok(unrelayed !== undefined && unrelayed < 1, `unrelayed ${unrelayed}: the third request's age`)
    assert.ok((sampleValue(text, 'coupon_sale_oldest_unwritten_age_seconds', sale) ?? 0) >= 1.5)

    // The third is read but not acknowledged (a relay mid-send): still not on Kafka.
    await t.env.redis.xreadgroup('GROUP', 'relay', 'test', 'COUNT', 1, 'STREAMS', stream, '>')
    text = await scrape(t)
    const pending = sampleValue(text, 'coupon_sale_oldest_unrelayed_age_seconds', sale)
    assert.ok(pending !== undefined && pending > 0 && pending < 1, `pending on the relay ${pending}`)
  })
})
