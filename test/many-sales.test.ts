import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { type OwnRedis, startOwnRedis } from '../bench/lib/redis-server.ts'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { eventually, issuedRows } from './support/infra.ts'

const OPEN_COUPONS = 1_000
const HOT_COUPONS = 5
const HOT_QUANTITY = 200
const HOT_USERS = 250
/** The target of issue #11: 0.2 commands per open coupon per second, plus a small constant. */
const idleBound = (openCoupons: number) => 0.2 * openCoupons + 50
/** Longer than the drainers' sweep period (20 s) and the scheduler's (10 s), so the window holds a sweep of each. */
const IDLE_WINDOW_MS = 21_000

/** Commands the server ran (INFO commandstats, without the probe's own INFO calls). */
async function commandsRun(probe: Redis): Promise<number> {
  const info = await probe.info('commandstats')
  let total = 0
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] !== 'info') total += Number(match[2])
  }
  return total
}

/** Redis commands per second over IDLE_WINDOW_MS while nobody requests anything. */
async function idleRate(probe: Redis): Promise<number> {
  const before = await commandsRun(probe)
  const started = Date.now()
  await sleep(IDLE_WINDOW_MS)
  const run = (await commandsRun(probe)) - before
  return run / ((Date.now() - started) / 1_000)
}

describe('many sales at once: 1,000 open coupons in one process', () => {
  let redis: OwnRedis
  let probe: Redis
  let t: TestApp
  before(async () => {
    // A Redis of the test's own: its command counters see only this process.
    redis = await startOwnRedis({ persistence: 'none' })
    probe = new Redis(redis.url)
    t = await startTestApp('manysales', { REDIS_URL: redis.url, QUEUE_DRAIN_CRON: '* * * * * *' })
  })
  after(async () => {
    await t?.close()
    probe?.disconnect()
    await redis?.destroy()
  })

  it('issues the hot stream sales exactly, first come first served, and the idle ones cost Redis almost nothing', async (ctx) => {
    const ids = await runConcurrently(OPEN_COUPONS, 8, async (i) => {
      const coupon = await t.createCoupon({ quantity: i < HOT_COUPONS ? HOT_QUANTITY : 100 })
      return coupon.id
    })
    const hot = ids.slice(0, HOT_COUPONS)

    // The hot sales: every user once on every hot coupon, interleaved.
    const answers = await runConcurrently(HOT_COUPONS * HOT_USERS, 32, async (i) => {
      const couponId = hot[i % HOT_COUPONS]!
      const userId = `hot-${Math.floor(i / HOT_COUPONS)}`
      const result = await t.http('POST', `/coupons/${couponId}/issuance`, { token: t.tokenFor(userId) })
      return { couponId, userId, status: result.status, position: result.body.position }
    })
    for (const couponId of hot) {
      const mine = answers.filter((answer) => answer.couponId === couponId)
      const accepted = mine.filter((answer) => answer.status === 202)
      assert.equal(accepted.length, HOT_QUANTITY, 'the whole stock is accepted, no more')
      assert.equal(mine.filter((answer) => answer.status === 410).length, HOT_USERS - HOT_QUANTITY)
      await eventually(
        async () => (await issuedRows(t.env.db, couponId)).length >= accepted.length,
        `coupon ${couponId}: every accepted request has its row`,
      )
      const rows = await issuedRows(t.env.db, couponId)
      assert.equal(rows.length, accepted.length, 'rows = accepted')
      assert.equal(new Set(rows.map((row) => row.user_id)).size, rows.length, 'no user holds two')
      assert.deepEqual(
        rows.map((row) => row.position),
        Array.from({ length: HOT_QUANTITY }, (_, i) => i + 1),
        'positions 1..quantity, each once',
      )
      const positionOf = new Map(accepted.map((answer) => [answer.userId, answer.position]))
      assert.ok(
        rows.every((row) => positionOf.get(row.user_id) === row.position),
        'each row holds the position its user was told at admission (FCFS)',
      )
    }
    const idle = ids.slice(HOT_COUPONS)
    const { rows: idleRows } = await t.env.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM user_coupons WHERE coupon_id = ANY($1)',
      [idle],
    )
    assert.equal(idleRows[0]!.n, 0, 'nobody holds an idle coupon')

    // Quiet now: what do the 1,000 open coupons cost while nobody asks for anything?
    await sleep(1_000)
    const perSecond = await idleRate(probe)
    ctx.diagnostic(`idle: ${perSecond.toFixed(1)} Redis commands/s with ${OPEN_COUPONS} open stream coupons`)
    assert.ok(
      perSecond < idleBound(OPEN_COUPONS),
      `idle: ${perSecond.toFixed(1)} Redis commands/s with ${OPEN_COUPONS} open coupons (bound ${idleBound(OPEN_COUPONS)})`,
    )
    const clients = String(await probe.call('CLIENT', 'LIST'))
      .trim()
      .split('\n')
    assert.ok(clients.length < 20, `${clients.length} Redis connections: none per coupon`)
  })

  it('drains a hot queue sale on the every-second cron while 1,000 idle queue coupons cost each tick almost nothing', async (ctx) => {
    const ids = await runConcurrently(OPEN_COUPONS, 8, async (i) => {
      const coupon = await t.createCoupon({ issueMode: 'queue', quantity: i === 0 ? HOT_QUANTITY : 100 })
      return coupon.id
    })
    const hot = ids[0]!
    const answers = await runConcurrently(HOT_USERS, 32, async (i) => {
      const userId = `queue-${i}`
      const result = await t.http('POST', `/coupons/${hot}/issuance`, { token: t.tokenFor(userId) })
      return { userId, status: result.status, position: result.body.position }
    })
    assert.ok(answers.every((answer) => answer.status === 202 || answer.status === 410))
    await eventually(
      async () => (await issuedRows(t.env.db, hot)).length >= HOT_QUANTITY,
      'the cron issued the whole stock',
    )
    const rows = await issuedRows(t.env.db, hot)
    assert.equal(rows.length, HOT_QUANTITY, 'no more rows than the stock')
    const byPosition = answers
      .filter((answer) => answer.status === 202)
      .sort((a, b) => Number(a.position) - Number(b.position))
      .slice(0, HOT_QUANTITY)
      .map((answer) => answer.userId)
    assert.deepEqual(
      rows.map((row) => row.user_id),
      byPosition,
      'the first queued are the ones issued, in queue order',
    )

    await sleep(1_000)
    const open = 2 * OPEN_COUPONS
    const perSecond = await idleRate(probe)
    ctx.diagnostic(`idle: ${perSecond.toFixed(1)} Redis commands/s with ${open} open coupons (half queue)`)
    assert.ok(
      perSecond < idleBound(open),
      `idle: ${perSecond.toFixed(1)} Redis commands/s with ${open} open coupons (bound ${idleBound(open)})`,
    )
  })
})
