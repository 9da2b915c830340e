import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { queueMode, queueScheduler } from '../src/issuance/queue/queue-mode.ts'
import { createTestEnv, eventually, insertTestCoupon, issuedRows, type TestEnv } from './support/infra.ts'

let env: TestEnv

before(async () => {
  env = await createTestEnv('queuecron')
})

after(async () => {
  await env.close()
})

describe('queue scheduler', () => {
  it('drains the queue on its own with an every-second cron pattern', async () => {
    const mode = queueMode(env)
    const coupon = await insertTestCoupon(env.db, { quantity: 2, issueMode: 'queue' })
    await mode.prepare(coupon)
    const scheduler = queueScheduler(env, { cron: '* * * * * *' })
    await scheduler.start()
    try {
      for (const user of ['a', 'b', 'c']) await mode.request(coupon, user)
      await eventually(async () => {
        const statuses = await Promise.all(['a', 'b', 'c'].map((user) => mode.status(coupon, user)))
        return statuses.every((issuance) => issuance !== undefined && issuance.status !== 'PENDING')
      }, 'the cron scheduler decided every waiting user')
    } finally {
      await scheduler.stop()
    }
    assert.deepEqual(
      (await issuedRows(env.db, coupon.id)).map((row) => row.user_id),
      ['a', 'b'],
    )
    assert.equal((await mode.status(coupon, 'c'))?.status, 'SOLD_OUT')
  })

  it('accepts the ten-minute 6-field pattern 0 */10 * * * * and fires on 10-minute boundaries', () => {
    const scheduler = queueScheduler(env, { cron: '0 */10 * * * *' })
    const next = scheduler.nextRun()
    assert.ok(next !== null)
    assert.equal(next.getMinutes() % 10, 0)
    assert.equal(next.getSeconds(), 0)
    assert.equal(next.getMilliseconds(), 0)
    assert.ok(next.getTime() > Date.now() && next.getTime() <= Date.now() + 600_000)
    assert.deepEqual(scheduler.nextRun(new Date(2025, 0, 1, 10, 3, 27)), new Date(2025, 0, 1, 10, 10, 0))
    assert.deepEqual(scheduler.nextRun(new Date(2025, 0, 1, 10, 50, 0)), new Date(2025, 0, 1, 11, 0, 0))
  })

  it('refuses an invalid cron pattern when constructed', () => {
    assert.throws(() => queueScheduler(env, { cron: 'every ten minutes' }))
    assert.throws(() => queueScheduler(env, { cron: '0 */70 * * * *' }))
  })

  it('stops without leaving a timer or a tick running', async () => {
    const scheduler = queueScheduler(env, { cron: '* * * * * *' })
    await scheduler.start()
    await scheduler.drainOnce()
    await scheduler.stop()
    await scheduler.stop()
  })
})
