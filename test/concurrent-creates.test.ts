import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'

/*
 * Issue 18 item 2: a create must not hold a pool connection while it waits for a second one (the mode's
 * set-up reads Postgres too). With every create holding one connection and waiting for another, a pool of N
 * deadlocks at N concurrent creates and answers 503 once the connect timeout passes.
 */
function couponBody(index: number, issueMode: string) {
  const now = Date.now()
  return {
    name: `Sale ${index}`,
    discount: { type: 'FIXED', amount: 100 },
    quantity: 10,
    issueStartsAt: new Date(now + 60_000).toISOString(),
    issueEndsAt: new Date(now + 3_600_000).toISOString(),
    validDays: 7,
    issueMode,
  }
}

async function createAtOnce(t: TestApp, count: number): Promise<Map<number, number>> {
  const modes = ['stream', 'queue', 'sync']
  const statuses = await runConcurrently(count, count, async (index) => {
    // Every tenth body is invalid (quantity 0): its 4xx must come back as such, not as a 503.
    const body = {
      ...couponBody(index, modes[index % modes.length]!),
      ...(index % 10 === 9 ? { quantity: 0 } : {}),
    }
    return (await t.http('POST', '/admin/coupons', { token: t.adminToken, body })).status
  })
  const counts = new Map<number, number>()
  for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1)
  return counts
}

for (const poolSize of [undefined, '2'] as const) {
  describe(`concurrent creates with ${poolSize === undefined ? 'the default pool' : `a pool of ${poolSize}`}`, () => {
    let t: TestApp
    before(async () => {
      t = await startTestApp('creates', poolSize === undefined ? {} : { DATABASE_POOL_SIZE: poolSize }, {
        runWorkers: false,
      })
    })
    after(async () => t.close())

    for (const count of [50, 500]) {
      it(`answers ${count} concurrent creates 201 (or 400 for a bad body), none 503`, async () => {
        const counts = await createAtOnce(t, count)
        const invalid = Math.floor(count / 10)
        assert.deepEqual(Object.fromEntries(counts), { 201: count - invalid, 400: invalid })
        const { rows } = await t.env.db.query<{ n: number }>('SELECT count(*)::int AS n FROM coupons')
        assert.ok(rows[0]!.n >= count - invalid)
      })
    }
  })
}
