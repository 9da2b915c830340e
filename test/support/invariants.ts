import assert from 'node:assert/strict'
import type { IssueMode } from '../../src/domain/coupon.ts'
import { decodeRecord } from '../../src/issuance/core/record.ts'
import { runConcurrently, type TestApp } from './app.ts'
import { eventually, issuedRows } from './infra.ts'

/**
 * One flash sale over real HTTP checked against the invariants of docs/api.md: `users` distinct users (a quarter of
 * them pressing twice) and 100 requests in flight for a small stock. Every admitted request must end
 * decided; rows = quantity, once per user, positions 1..quantity (the first requesters), a clean audit.
 */
export async function assertSaleInvariants(
  t: TestApp,
  issueMode: IssueMode,
  { quantity = 40, users: userCount = 1600 }: { quantity?: number; users?: number } = {},
): Promise<void> {
  const coupon = await t.createCoupon({ quantity, issueMode })
  const users = Array.from({ length: userCount }, (_, i) => `${issueMode}-u${i}`)
  const requests = [...users, ...users.slice(0, userCount / 4)]
  const answers = await runConcurrently(requests.length, 100, async (i) => {
    const userId = requests[i]!
    return {
      userId,
      ...(await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(userId) })),
    }
  })
  const admitted = answers.filter((a) => a.status === 201 || a.status === 202)
  for (const answer of answers) {
    assert.ok(
      [201, 202, 409, 410].includes(answer.status),
      `unexpected ${answer.status} ${JSON.stringify(answer.body)}`,
    )
  }
  assert.equal(new Set(admitted.map((a) => a.userId)).size, admitted.length, 'one admission per user')

  // Every admitted request ends decided: ISSUED, or SOLD_OUT (queue only).
  const decided = new Map<string, Record<string, unknown>>()
  await eventually(async () => {
    for (const { userId } of admitted) {
      if (decided.has(userId)) continue
      const status = await t.http('GET', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(userId) })
      if (status.body.status === 'ISSUED' || status.body.status === 'SOLD_OUT')
        decided.set(userId, status.body)
    }
    return decided.size === admitted.length
  }, 'every admitted request decided')

  const rows = await issuedRows(t.env.db, coupon.id)
  assert.equal(rows.length, quantity, 'no over-issue, and the whole stock issued')
  assert.equal(new Set(rows.map((r) => r.user_id)).size, rows.length, 'no duplicate')
  assert.deepEqual(
    rows.map((r) => r.position),
    Array.from({ length: quantity }, (_, i) => i + 1),
    'the issued rows hold positions 1..quantity: the first requesters',
  )
  const issuedUsers = new Set(rows.map((r) => r.user_id))
  for (const [userId, status] of decided) {
    assert.equal(issuedUsers.has(userId), status.status === 'ISSUED', `${userId} is ${status.status}`)
  }
  if (issueMode !== 'queue') assert.equal(admitted.length, quantity, 'only winners are admitted')
  else {
    // queue admits everyone while stock remains; the first by position win.
    const byPosition = admitted
      .map((a) => [Number(a.body.position), a.userId] as const)
      .sort((x, y) => x[0] - y[0])
    assert.deepEqual(
      byPosition
        .slice(0, quantity)
        .map(([, userId]) => userId)
        .sort(),
      [...issuedUsers].sort(),
      'the issued users are exactly the first by position',
    )
  }
  const audit = await t.http('GET', `/admin/coupons/${coupon.id}/audit`, { token: t.adminToken })
  assert.equal(audit.status, 200, JSON.stringify(audit.body))
  assert.equal(audit.body.overIssued, 0)
  assert.equal(audit.body.duplicateRows, 0)
  assert.deepEqual(audit.body.inconsistencies, [])
}

/**
 * The users told `202 PENDING` (queue mode) whose record is not decided yet: every one of them must end
 * `ISSUED` or `SOLD_OUT`. `records` is the coupon's users hash (HGETALL) after the drain.
 */
export function undecidedPending(acked: { userId: string }[], records: Record<string, string>): string[] {
  return acked
    .filter((a) => {
      const raw = records[a.userId]
      const status = raw === undefined ? undefined : decodeRecord(raw).status
      return status !== 'ISSUED' && status !== 'SOLD_OUT'
    })
    .map((a) => a.userId)
}

/**
 * The rows of a sale that sold out after a crash or failover, against what its users were told: no user
 * twice, no more than the stock, the whole stock issued, positions exactly 1..quantity, and each row at the
 * position its user was answered (FCFS).
 */
export function assertRowsAsTold(
  rows: { user_id: string; position: number | string | null }[],
  acked: { userId: string; position?: number }[],
  quantity: number,
): void {
  const rowOf = new Map(rows.map((row) => [row.user_id, row]))
  assert.equal(rows.length - rowOf.size, 0, 'no user holds two rows')
  assert.equal(Math.max(rows.length - quantity, 0), 0, 'no more rows than the quantity')
  assert.equal(rows.length, quantity, 'the whole stock was issued')
  assert.deepEqual(
    rows.map((row) => Number(row.position)),
    Array.from({ length: quantity }, (_, i) => i + 1),
    'rows hold positions 1..quantity',
  )
  assert.deepEqual(
    acked
      .filter((a) => rowOf.has(a.userId) && Number(rowOf.get(a.userId)!.position) !== a.position)
      .map((a) => a.userId),
    [],
    'every row has the position its user was told',
  )
}
