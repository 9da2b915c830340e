import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CouponStates } from '../src/issuance/core/coupon-state.ts'
import { writeIssued } from '../src/issuance/core/decisions.ts'
import { inTransaction } from '../src/storage/postgres.ts'
import {
  type IssueRequest,
  issueBatch,
  issueFreshAlone,
  isUniqueViolation,
} from '../src/storage/user-coupons.ts'
import { createTestEnv, insertTestCoupon, issuedRows, type TestEnv } from './support/infra.ts'

const requestsFor = (from: number, count: number): IssueRequest[] =>
  Array.from({ length: count }, (_, i) => ({
    userId: `b${from + i}`,
    position: from + i,
    requestedAt: new Date(),
  }))

describe('issuing a batch in Postgres', () => {
  let env: TestEnv
  before(async () => {
    env = await createTestEnv('batch')
  })
  after(() => env.close())

  const issue = (couponId: number, requests: IssueRequest[]) =>
    inTransaction(env.db, (client) => issueBatch(client, couponId, requests))
  const issuedCount = async (couponId: number) =>
    (await env.db.query('SELECT issued_count FROM coupons WHERE id = $1', [couponId])).rows[0].issued_count

  it('inserts a batch within the stock once, and a replay of it inserts nothing and uses no stock', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 100 })
    const first = await issue(coupon.id, requestsFor(1, 60))
    assert.equal(first.issued.length, 60)
    const replay = await issue(coupon.id, requestsFor(1, 60))
    assert.equal(replay.issued.length, 60, 'replayed users are reported issued with their rows')
    assert.deepEqual(replay.soldOut, [])
    assert.deepEqual(replay.issued.map((row) => row.id).sort(), first.issued.map((row) => row.id).sort())
    assert.equal(await issuedCount(coupon.id), 60)
  })

  it('gives a batch beyond the stock to its lowest positions only, and reports the rest sold out', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 10 })
    await issue(coupon.id, requestsFor(1, 4))
    // Users 3 and 4 again (a replay) plus 10 newcomers, for 6 units left.
    const result = await issue(coupon.id, [...requestsFor(3, 2), ...requestsFor(20, 10)].reverse())
    const rows = await issuedRows(env.db, coupon.id)
    assert.deepEqual(
      rows.map((row) => row.user_id),
      ['b1', 'b2', 'b3', 'b4', 'b20', 'b21', 'b22', 'b23', 'b24', 'b25'],
    )
    assert.deepEqual(result.soldOut.sort(), ['b26', 'b27', 'b28', 'b29'])
    assert.equal(result.issued.length, 8, 'the 2 replayed holders and the 6 newcomers')
    assert.equal(await issuedCount(coupon.id), 10)
  })

  it('never over-issues when many writers issue batches of one coupon at once', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 200 })
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => issue(coupon.id, requestsFor(i * 25, 25))),
    )
    const rows = await issuedRows(env.db, coupon.id)
    assert.equal(rows.length, 200)
    assert.equal(await issuedCount(coupon.id), 200)
    assert.equal(
      results.reduce((sum, result) => sum + result.soldOut.length, 0),
      100,
    )
  })

  it('writes a fresh batch as one statement, in position order, and writes nothing for any other batch', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 50 })
    const fresh = await issueFreshAlone(env.db, coupon.id, requestsFor(1, 30).reverse())
    assert.equal(fresh?.ids.length, 30)
    const rows = await issuedRows(env.db, coupon.id)
    assert.deepEqual(
      rows.map((row) => row.user_id),
      requestsFor(1, 30).map((request) => request.userId),
      'ids follow the positions',
    )
    const ids = await env.db.query<{ id: number; user_id: string }>(
      'SELECT id, user_id FROM user_coupons WHERE coupon_id = $1 ORDER BY position',
      [coupon.id],
    )
    assert.deepEqual(
      fresh?.requests.map((request, i) => [request.userId, Number(fresh.ids[i])]),
      ids.rows.map((row) => [row.user_id, row.id]),
      'each request is answered with its own row, in position order',
    )
    assert.equal(await issuedCount(coupon.id), 30)
    await assert.rejects(issueFreshAlone(env.db, coupon.id, requestsFor(25, 10)), isUniqueViolation)
    const twice = [...requestsFor(40, 2), ...requestsFor(40, 1)]
    assert.equal(await issueFreshAlone(env.db, coupon.id, twice), undefined, 'a user twice')
    const samePosition = requestsFor(40, 2).map((request) => ({ ...request, position: 40 }))
    assert.equal(await issueFreshAlone(env.db, coupon.id, samePosition), undefined, 'a position twice')
    assert.equal(await issueFreshAlone(env.db, coupon.id, requestsFor(100, 21)), undefined, 'stock short')
    assert.equal((await issuedRows(env.db, coupon.id)).length, 30, 'the refused batches left nothing behind')
    assert.equal(await issuedCount(coupon.id), 30)
  })

  it('never over-issues when many fresh batches of one coupon are written at once', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 200 })
    const state = new CouponStates(env).of(coupon.id)
    const written = await Promise.all(
      Array.from({ length: 12 }, (_, i) => writeIssued(env, state, coupon, requestsFor(1 + i * 25, 25))),
    )
    const decisions = written.flat()
    const rows = await issuedRows(env.db, coupon.id)
    assert.equal(rows.length, 200)
    assert.equal(new Set(rows.map((row) => row.user_id)).size, 200)
    assert.equal(await issuedCount(coupon.id), 200)
    const issuedUsers = decisions.filter(([, record]) => record.status === 'ISSUED').map(([user]) => user)
    assert.equal(issuedUsers.length, 200)
    assert.equal(decisions.filter(([, record]) => record.status === 'SOLD_OUT').length, 100)
    assert.deepEqual(
      issuedUsers.sort(),
      rows.map((row) => row.user_id).sort(),
      'every ISSUED user holds a row',
    )
  })

  it('writes user ids exactly, whatever characters they hold', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 10 })
    const plain = ['a.b:c-d_e', 'comma,{brace}', 'sp ace', '']
    const escaped = ['with"quote', 'back\\slash']
    const users = [...plain, ...escaped]
    for (const batch of [plain, escaped]) {
      const requests = batch.map((userId) => ({
        userId,
        position: users.indexOf(userId) + 1,
        requestedAt: new Date(),
      }))
      await issueFreshAlone(env.db, coupon.id, requests)
    }
    const rows = await issuedRows(env.db, coupon.id)
    assert.deepEqual(rows.map((row) => row.user_id).sort(), [...users].sort())
  })

  it('writes a batch replayed in part once: the fallback adds the missing rows, the count stays exact', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 100 })
    const state = new CouponStates(env).of(coupon.id)
    const first = await writeIssued(env, state, coupon, requestsFor(1, 20))
    // The same batch again after a crash, with newcomers behind it.
    const replay = await writeIssued(env, state, coupon, requestsFor(1, 30))
    const rows = await issuedRows(env.db, coupon.id)
    assert.equal(rows.length, 30, 'no duplicate row')
    assert.equal(new Set(rows.map((row) => row.user_id)).size, 30)
    assert.equal(await issuedCount(coupon.id), 30)
    assert.equal(replay.length, 30, 'every user of the replay is decided')
    const idOf = (decisions: typeof first, user: string) => {
      const record = decisions.find(([userId]) => userId === user)?.[1]
      return record?.status === 'ISSUED' ? record.userCouponId : undefined
    }
    assert.equal(idOf(replay, 'b1'), idOf(first, 'b1'), 'a replayed user keeps their row')
  })
})
