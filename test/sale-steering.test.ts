import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { IssueMode } from '../src/domain/coupon.ts'
import { couponScripts } from '../src/issuance/core/coupon-state.ts'
import { decodeRecord } from '../src/issuance/core/record.ts'
import { queueMode, queueScheduler } from '../src/issuance/queue/queue-mode.ts'
import { IssuanceService } from '../src/issuance/service/issuance-service.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { startTestApp, type TestApp } from './support/app.ts'
import { TEST_KAFKA_BROKERS } from './support/cluster-app.ts'
import { createTestEnv, eventually, insertTestCoupon, issuedRows } from './support/infra.ts'
import { assertRowsAsTold, undecidedPending } from './support/invariants.ts'

/**
 * Steering a live sale (PATCH/DELETE /admin/coupons/{id}, its history): the rules of which change is allowed
 * when, and, in every mode, a sale under a few thousand concurrent users that is paused and resumed, gets
 * stock added once sold out, and is ended now, with the invariants of docs/api.md checked throughout.
 */

const USERS = 5_000
/** sync issues one user per Postgres transaction under its fair lock: fewer users keep the file under a minute. */
const SYNC_USERS = 3_000
const INITIAL = 300
const ADDED = 300
const CONCURRENCY = 100

interface Answer {
  userId: string
  status: number
  code?: string
  position?: number
  sentAt: number
  doneAt: number
}

interface Step {
  afterAnswers: number
  body: Record<string, unknown>
  sentAt?: number
  doneAt?: number
}

function hoursFromNow(hours: number): string {
  return new Date(Date.now() + hours * 3_600_000).toISOString()
}

/** Requests a sale keeps sending after its last step's PATCH returned, so the end is seen refusing. */
const TAIL_AFTER_LAST_STEP = 100

/**
 * The sale: `users` distinct users (more if the steps are not all done by then), CONCURRENCY in flight. The steps
 * run one after the other, each once `afterAnswers` requests were answered since the previous one's PATCH returned;
 * the worker that reaches it sends the PATCH while the other CONCURRENCY - 1 keep sending. Fast refusals can use
 * up the users while a PATCH is slow, so the sale goes on until TAIL_AFTER_LAST_STEP requests were sent after the
 * last step (at most three times `users`).
 */
async function runSteeredSale(
  t: TestApp,
  couponId: number,
  mode: IssueMode,
  steps: Step[],
  users: number,
): Promise<Answer[]> {
  let answeredSinceStep = 0
  let steering = false
  const last = steps.at(-1)!
  const patch = async (step: Step) => {
    steering = true
    step.sentAt = performance.now()
    const result = await t.http('PATCH', `/admin/coupons/${couponId}`, {
      token: t.adminToken,
      body: step.body,
      headers: { 'x-admin-name': `ops-${mode}` },
    })
    step.doneAt = performance.now()
    answeredSinceStep = 0
    steering = false
    assert.equal(result.status, 200, `PATCH ${JSON.stringify(step.body)}: ${JSON.stringify(result.body)}`)
  }
  const answers: Answer[] = []
  let next = 0
  let sentAfterLastStep = 0
  const more = () => next < users || (next < users * 3 && sentAfterLastStep < TAIL_AFTER_LAST_STEP)
  const request = async (i: number) => {
    const userId = `${mode}-u${i}`
    const sentAt = performance.now()
    if (last.doneAt !== undefined) sentAfterLastStep += 1
    const result = await t.http('POST', `/coupons/${couponId}/issuance`, { token: t.tokenFor(userId) })
    const answer: Answer = { userId, status: result.status, sentAt, doneAt: performance.now() }
    if (result.body.code !== undefined) answer.code = result.body.code
    if (typeof result.body.position === 'number') answer.position = result.body.position
    answers.push(answer)
    answeredSinceStep += 1
    const step = steps.find((candidate) => candidate.sentAt === undefined)
    if (step !== undefined && !steering && answeredSinceStep >= step.afterAnswers) await patch(step)
  }
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (more()) await request(next++)
    }),
  )
  return answers
}

/** Requests sent after `from` (a PATCH's answer) and answered before `to` (the next PATCH was sent). */
function between(answers: Answer[], from: number, to = Number.POSITIVE_INFINITY): Answer[] {
  return answers.filter((a) => a.sentAt > from && a.doneAt < to)
}

async function waitUntilDecided(t: TestApp, couponId: number, admitted: Answer[]) {
  const { users } = couponKeys(t.env.redisPrefix, couponId)
  let records: Record<string, string> = {}
  await eventually(async () => {
    records = await t.env.redis.hgetall(users)
    return undecidedPending(admitted, records).length === 0
  }, 'every admitted request decided')
  return records
}

/** Queue FCFS: a waiting user passed over by a later one was resolved SOLD_OUT before the stock was added. */
function assertQueueOrder(
  admitted: Answer[],
  records: Record<string, string>,
  addedAtMs: number,
  issued: Set<string>,
) {
  const lastIssued = Math.max(...admitted.filter((a) => issued.has(a.userId)).map((a) => a.position ?? 0))
  const passedOver = admitted.filter((a) => !issued.has(a.userId) && (a.position ?? 0) < lastIssued)
  for (const a of passedOver) {
    const record = decodeRecord(records[a.userId]!)
    assert.equal(record.status, 'SOLD_OUT', `${a.userId} waited ahead of an issued user`)
    assert.ok(
      (record.decidedAtMs ?? 0) <= addedAtMs,
      `${a.userId} was resolved SOLD_OUT after the stock was added`,
    )
  }
}

async function checkSteeredSale(
  t: TestApp,
  couponId: number,
  mode: IssueMode,
  answers: Answer[],
  steps: Step[],
) {
  const [pause, resume, add, end] = steps as [Step, Step, Step, Step]
  for (const a of answers) {
    assert.ok([201, 202, 410, 422].includes(a.status), `unexpected ${a.status} ${a.code}`)
    if (a.status === 422) assert.ok(a.code === 'ISSUE_PAUSED' || a.code === 'ISSUE_ENDED', a.code)
  }
  const paused = between(answers, pause.doneAt!, resume.sentAt!)
  assert.ok(paused.length > 0, 'requests arrived while paused')
  assert.deepEqual(
    new Set(paused.map((a) => a.code)),
    new Set(['ISSUE_PAUSED']),
    'paused: every request refused',
  )
  assert.equal(between(answers, resume.doneAt!).filter((a) => a.code === 'ISSUE_PAUSED').length, 0, 'resumed')
  const afterEnd = between(answers, end.doneAt!)
  assert.ok(afterEnd.length > 0, 'requests arrived after the end')
  assert.deepEqual(
    new Set(afterEnd.map((a) => a.code)),
    new Set(['ISSUE_ENDED']),
    'ended: every request refused',
  )
  const admitted = answers.filter((a) => a.status === 201 || a.status === 202)
  assert.ok(between(admitted, add.doneAt!).length > 0, 'the added stock went to later arrivals')

  const records = await waitUntilDecided(t, couponId, admitted)
  const quantity = INITIAL + ADDED
  const rows = await issuedRows(t.env.db, couponId)
  if (mode === 'queue') {
    const issued = new Set(rows.map((row) => row.user_id))
    assert.equal(issued.size, rows.length, 'no duplicate')
    assert.equal(rows.length, quantity, 'the whole stock issued, no more')
    for (const row of rows) {
      const told = admitted.find((a) => a.userId === row.user_id)
      assert.equal(Number(row.position), told?.position, `${row.user_id} issued at the position told`)
    }
    const history = await t.http('GET', `/admin/coupons/${couponId}/history`, { token: t.adminToken })
    const addedAt = (history.body as unknown as { at: string; change: object }[]).find(
      (c) => 'quantity' in c.change,
    )
    assertQueueOrder(admitted, records, Date.parse(addedAt!.at), issued)
  } else {
    assert.equal(admitted.length, quantity, 'exactly the stock admitted, the added units included')
    assertRowsAsTold(rows, admitted, quantity)
  }
  await eventually(async () => {
    const audit = await t.http('GET', `/admin/coupons/${couponId}/audit`, { token: t.adminToken })
    return audit.body.acceptedNotYetIssued === 0 && (audit.body.inconsistencies as string[]).length === 0
  }, 'a clean audit')
  const audit = await t.http('GET', `/admin/coupons/${couponId}/audit`, { token: t.adminToken })
  assert.equal(audit.body.overIssued, 0)
  assert.equal(audit.body.duplicateRows, 0)
}

describe('steering a live sale', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('steering', { QUEUE_DRAIN_CRON: '* * * * * *', KAFKA_BROKERS: TEST_KAFKA_BROKERS })
  })
  after(() => t.close())

  const patch = (id: number, body: unknown, admin?: string) =>
    t.http('PATCH', `/admin/coupons/${id}`, {
      token: t.adminToken,
      body,
      ...(admin === undefined ? {} : { headers: { 'x-admin-name': admin } }),
    })

  it('refuses bad values and forbidden moves with problem+json', async () => {
    const running = await t.createCoupon({ quantity: 5 })
    const expectations: [unknown, number, string][] = [
      [{}, 400, 'VALIDATION_ERROR'],
      [{ colour: 'red' }, 400, 'VALIDATION_ERROR'],
      [{ quantity: '7' }, 400, 'VALIDATION_ERROR'],
      [{ quantity: 0 }, 400, 'VALIDATION_ERROR'],
      [{ paused: 'yes' }, 400, 'VALIDATION_ERROR'],
      [{ name: '' }, 400, 'VALIDATION_ERROR'],
      [{ issueEndsAt: 'tomorrow' }, 400, 'VALIDATION_ERROR'],
      [{ quantity: 4 }, 422, 'QUANTITY_DECREASE'],
      [{ issueStartsAt: hoursFromNow(1) }, 409, 'SALE_STARTED'],
    ]
    for (const [body, status, code] of expectations) {
      const result = await patch(running.id, body)
      assert.equal(result.status, status, `${JSON.stringify(body)}: ${JSON.stringify(result.body)}`)
      assert.equal(result.body.code, code)
      assert.match(String(result.headers['content-type']), /application\/problem\+json/)
    }
    const nameless = await patch(running.id, { name: 'x' }, 'a'.repeat(65))
    assert.equal(nameless.status, 400, 'X-Admin-Name over 64 characters')
    assert.equal(nameless.body.code, 'VALIDATION_ERROR')
    // A coupon usable until a date cannot be issued past it.
    const withValidUntil = await t.createCoupon({ validUntil: hoursFromNow(48) })
    const beyondValidity = await patch(withValidUntil.id, { issueEndsAt: hoursFromNow(72) })
    assert.equal(beyondValidity.status, 400)
    assert.match(String(beyondValidity.body.detail), /validUntil/)

    const later = await t.createCoupon({ issueStartsAt: hoursFromNow(1), issueEndsAt: hoursFromNow(2) })
    const inThePast = await patch(later.id, { issueStartsAt: hoursFromNow(-1) })
    assert.equal(inThePast.status, 400)
    const crossed = await patch(later.id, { issueStartsAt: hoursFromNow(3) })
    assert.equal(crossed.status, 400, 'the start may not pass the end')
    const moved = await patch(later.id, { issueStartsAt: hoursFromNow(3), issueEndsAt: hoursFromNow(4) })
    assert.equal(moved.status, 200, JSON.stringify(moved.body))

    const ended = await t.createCoupon()
    assert.equal((await patch(ended.id, { issueEndsAt: hoursFromNow(-1) })).status, 200, 'ended now')
    for (const body of [{ quantity: 50 }, { paused: true }, { issueEndsAt: hoursFromNow(1) }]) {
      const result = await patch(ended.id, body)
      assert.equal(result.status, 409, JSON.stringify(body))
      assert.equal(result.body.code, 'SALE_ENDED')
    }
    assert.equal((await patch(ended.id, { name: 'Renamed after the end' })).status, 200)
    assert.equal((await patch(999_999, { name: 'x' })).status, 404)
  })

  it('pauses and resumes issuance, and records every change with its admin', async () => {
    const coupon = await t.createCoupon({ quantity: 5 })
    const alice = t.tokenFor('steer-alice')
    assert.equal((await patch(coupon.id, { paused: true }, 'carol')).body.paused, true)
    const refused = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: alice })
    assert.equal(refused.status, 422)
    assert.equal(refused.body.code, 'ISSUE_PAUSED')
    await patch(coupon.id, { paused: false, name: 'Resumed sale' })
    assert.equal((await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: alice })).status, 202)
    await patch(coupon.id, { quantity: 8 }, 'dave')
    await patch(coupon.id, { quantity: 8 }, 'dave') // changes nothing: not recorded
    const history = await t.http('GET', `/admin/coupons/${coupon.id}/history`, { token: t.adminToken })
    assert.equal(history.status, 200)
    const entries = history.body as unknown as { admin: string; change: Record<string, unknown> }[]
    assert.deepEqual(
      entries.map((entry) => [entry.admin, entry.change]),
      [
        ['carol', { paused: { from: false, to: true } }],
        ['admin', { name: { from: 'Flash sale', to: 'Resumed sale' }, paused: { from: true, to: false } }],
        ['dave', { quantity: { from: 5, to: 8 } }],
      ],
    )
    const view = await t.http('GET', `/admin/coupons/${coupon.id}`, { token: t.adminToken })
    assert.equal(view.body.quantity, 8)
    assert.equal((view.body.stats as { remaining: number }).remaining, 7, 'the added units are on sale')
  })

  it('deletes only a coupon nobody requested, and keeps its history', async () => {
    const requested = await t.createCoupon()
    await t.http('POST', `/coupons/${requested.id}/issuance`, { token: t.tokenFor('steer-bob') })
    const refused = await t.http('DELETE', `/admin/coupons/${requested.id}`, { token: t.adminToken })
    assert.equal(refused.status, 409)
    assert.equal(refused.body.code, 'COUPON_REQUESTED')
    const admission = await t.http('POST', `/coupons/${requested.id}/issuance`, {
      token: t.tokenFor('steer-eve'),
    })
    assert.equal(admission.status, 202, 'a refused delete leaves the sale running')

    for (const issueMode of ['sync', 'queue', 'stream'] as const) {
      const mistake = await t.createCoupon({ issueMode })
      const deleted = await t.http('DELETE', `/admin/coupons/${mistake.id}`, {
        token: t.adminToken,
        headers: { 'x-admin-name': 'erin' },
      })
      assert.equal(deleted.status, 204, JSON.stringify(deleted.body))
      assert.equal((await t.http('GET', `/coupons/${mistake.id}`)).status, 404)
      const late = await t.http('POST', `/coupons/${mistake.id}/issuance`, { token: t.tokenFor('steer-bob') })
      assert.equal(late.status, 404)
      const history = await t.http('GET', `/admin/coupons/${mistake.id}/history`, { token: t.adminToken })
      assert.deepEqual(
        (history.body as unknown as { admin: string; change: unknown }[]).map((e) => [e.admin, e.change]),
        [['erin', { deleted: true }]],
      )
      assert.equal(
        (await t.http('DELETE', `/admin/coupons/${mistake.id}`, { token: t.adminToken })).status,
        404,
      )
    }
  })

  for (const mode of ['stream', 'queue', 'kafka', 'sync'] as const) {
    const users = mode === 'sync' ? SYNC_USERS : USERS
    it(`${mode}: paused, resumed, stock added once sold out and ended now under ${users} users`, async () => {
      const coupon = await t.createCoupon({ quantity: INITIAL, issueMode: mode })
      const steps: Step[] = [
        { afterAnswers: users * 0.03, body: { paused: true } },
        { afterAnswers: users * 0.05, body: { paused: false } },
        { afterAnswers: users * 0.3, body: { quantity: INITIAL + ADDED } },
        { afterAnswers: users * 0.3, body: { issueEndsAt: new Date(0).toISOString() } },
      ]
      const answers = await runSteeredSale(t, coupon.id, mode, steps, users)
      await checkSteeredSale(t, coupon.id, mode, answers, steps)
      const history = await t.http('GET', `/admin/coupons/${coupon.id}/history`, { token: t.adminToken })
      const entries = history.body as unknown as { admin: string; change: Record<string, unknown> }[]
      assert.deepEqual(
        entries.map((entry) => [entry.admin, Object.keys(entry.change)]),
        [
          [`ops-${mode}`, ['paused']],
          [`ops-${mode}`, ['paused']],
          [`ops-${mode}`, ['quantity']],
          [`ops-${mode}`, ['issueEndsAt']],
        ],
      )
    })
  }
})

describe('adding stock in queue mode', () => {
  it('gives the new units to the users still waiting, in queue order; those resolved SOLD_OUT stay so', async () => {
    const env = await createTestEnv('steerqueue')
    const mode = queueMode(env)
    const service = new IssuanceService(env, [mode])
    // No cron tick during the test: each drain below is explicit.
    const scheduler = queueScheduler(env, { cron: '0 0 0 1 1 *' })
    try {
      const coupon = await insertTestCoupon(env.db, { quantity: 2, issueMode: 'queue' })
      await mode.prepare(coupon)
      for (const user of ['a', 'b', 'c', 'd'])
        assert.equal((await mode.request(coupon, user)).kind, 'admitted')
      await service.updateCoupon(coupon.id, { quantity: 3 }, 'ops')
      await scheduler.drainCoupon(coupon)
      const statusOf = async (user: string) => (await mode.status(coupon, user))?.status
      assert.deepEqual(
        (await issuedRows(env.db, coupon.id)).map((row) => row.user_id),
        ['a', 'b', 'c'],
      )
      assert.equal(await statusOf('d'), 'SOLD_OUT')

      // Sold out and resolved: new stock goes to the next arrivals; d's answer stands.
      assert.equal((await mode.request(coupon, 'e')).kind, 'soldOut')
      await service.updateCoupon(coupon.id, { quantity: 5 }, 'ops')
      for (const user of ['f', 'g', 'h']) assert.equal((await mode.request(coupon, user)).kind, 'admitted')
      await scheduler.drainCoupon(coupon)
      assert.deepEqual(
        (await issuedRows(env.db, coupon.id)).map((row) => row.user_id),
        ['a', 'b', 'c', 'f', 'g'],
      )
      assert.equal(await statusOf('d'), 'SOLD_OUT')
      assert.equal(await statusOf('h'), 'SOLD_OUT')
    } finally {
      await scheduler.stop()
      await service.close()
      await env.close()
    }
  })

  it('addStock adds the difference once; a stock count read under the old quantity cannot take it back', async () => {
    const env = await createTestEnv('steerscripts')
    try {
      const { state } = couponKeys(env.redisPrefix, 1)
      assert.equal(await couponScripts.addStock.run(env.redis, [state], [12, 10]), undefined, 'not loaded')
      assert.equal(await env.redis.exists(state), 0, 'no partial state hash')
      await env.redis.hset(state, 'stock', 0)
      assert.equal(await couponScripts.addStock.run(env.redis, [state], [12, 10]), 2)
      assert.equal(await couponScripts.addStock.run(env.redis, [state], [12, 10]), 2, 'a repeat adds nothing')
      assert.equal(await couponScripts.lowerQueueStock.run(env.redis, [state], [0, 10]), 2, 'stale: ignored')
      assert.equal(await couponScripts.lowerQueueStock.run(env.redis, [state], [1, 12]), 1, 'current: lowers')
      assert.equal(await couponScripts.addStock.run(env.redis, [state], [15, 12]), 4)
    } finally {
      await env.close()
    }
  })
})
