import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { eventually, issuedRows } from './support/infra.ts'
import { type OwnRedis, startOwnRedis } from './support/redis-server.ts'

const OPEN_COUPONS = 1_000
const HOT_COUPONS = 5
const HOT_QUANTITY = 200
const HOT_USERS = 250
/** The target of issue #11: 0.2 commands per open coupon per second, plus a small constant. */
const IDLE_BOUND_PER_SECOND = 0.2 * OPEN_COUPONS + 50
/** Longer than the drainers' sweep period (10 s by default), so the window holds a sweep or two. */
const IDLE_WINDOW_MS = 12_000

/** Commands the server ran (INFO commandstats, without the probe's own INFO calls). */
async function commandsRun(probe: Redis): Promise<number> {
  const info = await probe.info('commandstats')
  let total = 0
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] !== 'info') total += Number(match[2])
  }
  return total
}

describe('many sales at once: 1,000 open stream coupons in one process', () => {
  let redis: OwnRedis
  let probe: Redis
  let t: TestApp
  before(async () => {
    // A Redis of the test's own: its command counters see only this process.
    redis = await startOwnRedis({ persistence: 'none' })
    probe = new Redis(redis.url)
    t = await startTestApp('manysales', { REDIS_URL: redis.url })
  })
  after(async () => {
    await t?.close()
    probe?.disconnect()
    await redis?.destroy()
  })

  it('issues the hot sales exactly, first come first served, and the idle ones cost Redis almost nothing', async () => {
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
    const before = await commandsRun(probe)
    const started = Date.now()
    await sleep(IDLE_WINDOW_MS)
    const run = (await commandsRun(probe)) - before
    const perSecond = run / ((Date.now() - started) / 1_000)
    assert.ok(
      perSecond < IDLE_BOUND_PER_SECOND,
      `idle: ${perSecond.toFixed(1)} Redis commands/s with ${OPEN_COUPONS} open coupons (bound ${IDLE_BOUND_PER_SECOND})`,
    )
    const clients = String(await probe.call('CLIENT', 'LIST'))
      .trim()
      .split('\n')
    assert.ok(clients.length < 20, `${clients.length} Redis connections: none per coupon`)
  })
})
