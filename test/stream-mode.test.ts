import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { eventually, issuedRows } from './support/infra.ts'

describe('stream mode over HTTP', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('stream')
  })
  after(() => t.close())

  it('issues exactly the first 100 of 3000 concurrent requests from 2500 users, some pressing twice', async () => {
    const coupon = await t.createCoupon({ quantity: 100, issueMode: 'stream' })
    const users = Array.from({ length: 2500 }, (_, i) => `user-${i}`)
    const requests = [...users, ...users.slice(0, 500)]
    const answers = await runConcurrently(requests.length, 200, async (i) => {
      const userId = requests[i]!
      const result = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(userId) })
      return { userId, ...result }
    })
    const accepted = answers.filter((a) => a.status === 202)
    const soldOut = answers.filter((a) => a.status === 410)
    const duplicates = answers.filter((a) => a.status === 409)
    assert.equal(accepted.length, 100)
    assert.equal(
      accepted.length + soldOut.length + duplicates.length,
      requests.length,
      'every answer is 202, 409 or 410',
    )
    assert.deepEqual(
      accepted.map((a) => a.body.position).sort((x, y) => Number(x) - Number(y)),
      Array.from({ length: 100 }, (_, i) => i + 1),
      'accepted positions are exactly 1..100',
    )
    await eventually(
      async () => (await issuedRows(t.env.db, coupon.id)).length === 100,
      'all accepted rows written',
    )
    const rows = await issuedRows(t.env.db, coupon.id)
    assert.equal(new Set(rows.map((r) => r.user_id)).size, 100, 'no duplicate rows')
    assert.deepEqual(
      rows.map((r) => r.user_id).sort(),
      accepted.map((a) => a.userId).sort(),
      'the issued users are exactly the accepted ones',
    )
    const soldOutUsers = new Set(soldOut.map((a) => a.userId))
    assert.ok(
      rows.every((r) => !soldOutUsers.has(r.user_id)),
      'no sold-out user has a row',
    )
    const audit = await t.http('GET', `/admin/coupons/${coupon.id}/audit`, { token: t.adminToken })
    assert.deepEqual(audit.body.inconsistencies, [])
  })
})
