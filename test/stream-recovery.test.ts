import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { IssuanceWorker } from '../src/issuance/core/mode.ts'
import { streamWriters } from '../src/issuance/stream/stream-mode.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { deleteKeys, eventually, issuedRows } from './support/infra.ts'
import { spawnNode } from './support/processes.ts'

/** Admits `users` distinct users concurrently; returns the accepted user ids. */
async function admit(t: TestApp, couponId: number, users: string[]): Promise<string[]> {
  const answers = await runConcurrently(users.length, 64, async (i) => {
    const result = await t.http('POST', `/coupons/${couponId}/issuance`, { token: t.tokenFor(users[i]!) })
    return { userId: users[i]!, status: result.status }
  })
  return answers.filter((a) => a.status === 202).map((a) => a.userId)
}

async function assertIssuedExactly(t: TestApp, couponId: number, accepted: string[]) {
  await eventually(
    async () => (await issuedRows(t.env.db, couponId)).length >= accepted.length,
    'every accepted request has a row',
  )
  const rows = await issuedRows(t.env.db, couponId)
  assert.equal(rows.length, accepted.length, 'no extra rows')
  assert.deepEqual(
    rows.map((r) => r.user_id).sort(),
    [...accepted].sort(),
    'the rows are exactly the accepted users',
  )
  const { rows: counts } = await t.env.db.query('SELECT issued_count FROM coupons WHERE id = $1', [couponId])
  assert.equal(counts[0].issued_count, accepted.length, 'issued_count matches the rows')
}

const users = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)

describe('stream mode recovery (real processes, real servers)', () => {
  let t: TestApp
  let writers: IssuanceWorker | undefined
  before(async () => {
    // API only: the tests decide which writers run, and when.
    t = await startTestApp('streamrec', {}, { runWorkers: false })
  })
  after(async () => {
    await writers?.stop()
    await t.close()
  })

  for (const holdAt of ['in-transaction', 'after-commit'] as const) {
    it(`loses nothing and issues nothing twice when a writer is SIGKILLed ${holdAt === 'in-transaction' ? 'before' : 'after'} its commit`, async () => {
      const coupon = await t.createCoupon({ quantity: 120 })
      const accepted = await admit(t, coupon.id, users(`kill-${holdAt}`, 150))
      assert.equal(accepted.length, 120)
      const child = spawnNode('test/fixtures/stream-writer.ts', {
        ...t.env.childEnv,
        HOLD_AT: holdAt,
        HOLD_MS: '30000',
      })
      const holding = await child.waitFor(/^holding \d+/)
      await child.kill('SIGKILL')
      const rowsAtKill = (await issuedRows(t.env.db, coupon.id)).length
      const batch = Number(holding.split(' ')[1])
      assert.equal(rowsAtKill, holdAt === 'after-commit' ? batch : 0, 'the kill landed where intended')
      // A fresh writer takes over the dead consumer's pending entries once they are idle long enough.
      writers = streamWriters(t.env, { reclaimIdleMs: 300, refreshMs: 100 })
      await writers.start()
      await assertIssuedExactly(t, coupon.id, accepted)
      const keys = couponKeys(t.env.redisPrefix, coupon.id)
      await eventually(
        async () => (await t.env.redis.xlen(keys.stream)) === 0,
        'every entry acknowledged and deleted',
      )
      const statuses = await t.env.redis.hvals(keys.users)
      assert.ok(
        statuses.every((record) => record.startsWith('I|')),
        'every accepted user reads ISSUED',
      )
      await writers.stop()
      writers = undefined
    })
  }

  it('issues nothing twice when a stalled (SIGSTOPped) writer resumes after its batch was taken over', async () => {
    const coupon = await t.createCoupon({ quantity: 100 })
    const accepted = await admit(t, coupon.id, users('stop', 100))
    const child = spawnNode('test/fixtures/stream-writer.ts', {
      ...t.env.childEnv,
      HOLD_AT: 'after-read',
      HOLD_MS: '1500',
    })
    try {
      await child.waitFor(/^holding \d+/)
      child.process.kill('SIGSTOP')
      writers = streamWriters(t.env, { reclaimIdleMs: 300, refreshMs: 100 })
      await writers.start()
      await assertIssuedExactly(t, coupon.id, accepted)
      child.process.kill('SIGCONT')
      // The resumed writer now writes its stale batch: it must change nothing.
      await child.waitFor(/^wrote \d+/)
      await assertIssuedExactly(t, coupon.id, accepted)
    } finally {
      await child.kill('SIGKILL')
      await writers?.stop()
      writers = undefined
    }
  })

  it('rebuilds a coupon whose Redis keys were wiped mid-sale without over-issuing or a second coupon for anyone', async () => {
    writers = streamWriters(t.env, { reclaimIdleMs: 300, refreshMs: 100 })
    await writers.start()
    const coupon = await t.createCoupon({ quantity: 80 })
    const first = await admit(t, coupon.id, users('wipe', 50))
    assert.equal(first.length, 50)
    await eventually(async () => (await issuedRows(t.env.db, coupon.id)).length === 50, 'first wave written')
    assert.ok((await deleteKeys(t.env.redis, `${t.env.redisPrefix}{c:${coupon.id}}:*`)) > 0)
    // The first wave presses again (must get 409, not a second coupon), with 100 newcomers for 30 units left.
    const again = await runConcurrently(50, 25, (i) =>
      t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(first[i]!) }),
    )
    assert.ok(
      again.every((r) => r.status === 409),
      'users holding a coupon are recognised after the rebuild',
    )
    const second = await admit(t, coupon.id, users('wipe2', 100))
    assert.equal(second.length, 30, 'only the stock Postgres still has is given out')
    await assertIssuedExactly(t, coupon.id, [...first, ...second])
    await writers.stop()
    writers = undefined
  })

  it('dead-letters a poison entry after the allowed deliveries while the other entries are issued', async () => {
    writers = streamWriters(t.env, { reclaimIdleMs: 200, refreshMs: 100, maxDeliveries: 2 })
    await writers.start()
    const coupon = await t.createCoupon({ quantity: 20 })
    const keys = couponKeys(t.env.redisPrefix, coupon.id)
    // An entry no writer can store: its position is not a number.
    await t.env.redis.xadd(keys.stream, '*', 'u', 'poison', 'p', 'not-a-number', 't', String(Date.now()))
    const accepted = await admit(t, coupon.id, users('healthy', 10))
    await assertIssuedExactly(t, coupon.id, accepted)
    await eventually(
      async () => (await t.env.redis.xlen(keys.deadLetters)) === 1,
      'poison entry dead-lettered',
    )
    const [, fields] = (await t.env.redis.xrange(keys.deadLetters, '-', '+'))[0]!
    assert.equal(fields[fields.indexOf('u') + 1], 'poison')
    assert.match(fields[fields.indexOf('error') + 1] ?? '', /bigint|invalid/i)
    const audit = await t.http('GET', `/admin/coupons/${coupon.id}/audit`, { token: t.adminToken })
    assert.equal(audit.body.deadLettered, 1)
    assert.equal(await t.env.redis.xlen(keys.stream), 0)
    await writers.stop()
    writers = undefined
  })
})
