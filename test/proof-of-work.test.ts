/**
 * Proof of work per coupon (src/http/plugins/proof-of-work.ts): a coupon created with `proofOfWork` makes
 * each issuance request carry a solved ALTCHA challenge, handed out only once the coupon issues, bound to
 * the coupon and the user, spent once across every process.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { solveChallenge } from 'altcha-lib/v1'
import type { Challenge } from 'altcha-lib/v1/types'
import { request } from 'undici'
import { freePort } from '../bench/lib/infra.ts'
import { signUserToken } from '../src/auth/tokens.ts'
import {
  type HttpResult,
  startTestApp,
  TEST_ADMIN_TOKEN,
  TEST_JWT_SECRET,
  type TestApp,
} from './support/app.ts'
import { createTestEnv, eventually, type TestEnv } from './support/infra.ts'
import { type Child, spawnNode } from './support/processes.ts'

const POW_HMAC_KEY = 'pow-test-key-pow-test-key-pow-test-key-0123'
/** A low difficulty: the tests prove the rules, not the cost (README "Protecting a sale" has the figures). */
const EASY = { maxNumber: 1_000 }

/** An ALTCHA payload (what the widget sends) for `challenge` with `number`. */
function payloadOf(challenge: Challenge, number: number): string {
  const { algorithm, salt, signature } = challenge
  return btoa(JSON.stringify({ algorithm, challenge: challenge.challenge, number, salt, signature }))
}

async function solve(challenge: Challenge): Promise<string> {
  const solution = await solveChallenge(
    challenge.challenge,
    challenge.salt,
    challenge.algorithm,
    challenge.maxnumber,
  ).promise
  assert.ok(solution !== null, 'the challenge has a solution')
  return payloadOf(challenge, solution.number)
}

function assertRefused(answer: HttpResult, status: number, code: string) {
  assert.equal(answer.status, status, JSON.stringify(answer.body))
  assert.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8')
  assert.equal(answer.body.code, code)
}

describe('proof of work, two server processes', () => {
  let env: TestEnv
  const children: Child[] = []
  const baseUrls: string[] = []

  before(async () => {
    env = await createTestEnv('pow')
    for (let i = 0; i < 2; i++) {
      const port = await freePort()
      baseUrls.push(`http://127.0.0.1:${port}`)
      const childEnv = {
        ...env.childEnv,
        JWT_SECRET: TEST_JWT_SECRET,
        ADMIN_TOKEN: TEST_ADMIN_TOKEN,
        POW_HMAC_KEY,
        PORT: String(port),
        RUN_WORKERS: i === 0 ? 'true' : 'false',
      }
      children.push(spawnNode('bin/coupon-rush.mjs', childEnv, ['serve']))
    }
    for (const baseUrl of baseUrls) {
      await eventually(
        () =>
          request(`${baseUrl}/readyz`)
            .then((r) => r.body.text().then(() => r.statusCode === 200))
            .catch(() => false),
        `API on ${baseUrl} ready`,
        30_000,
      )
    }
  })
  after(async () => {
    await Promise.all(children.map((child) => child.kill('SIGTERM')))
    await env.close()
  })

  async function http(
    process: number,
    method: 'GET' | 'POST',
    path: string,
    options: { user?: string; admin?: boolean; body?: unknown; solution?: string } = {},
  ): Promise<HttpResult> {
    const token = options.admin
      ? TEST_ADMIN_TOKEN
      : options.user && signUserToken(TEST_JWT_SECRET, options.user)
    const response = await request(`${baseUrls[process]}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(options.solution === undefined ? {} : { altcha: options.solution }),
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    })
    const text = await response.body.text()
    return {
      status: response.statusCode,
      headers: response.headers,
      body: text === '' ? {} : JSON.parse(text),
    }
  }

  async function createCoupon(fields: Record<string, unknown> = {}): Promise<number> {
    const now = Date.now()
    const created = await http(0, 'POST', '/admin/coupons', {
      admin: true,
      body: {
        name: 'Guarded sale',
        discount: { type: 'FIXED', amount: 1000 },
        quantity: 10,
        issueStartsAt: new Date(now - 1_000).toISOString(),
        issueEndsAt: new Date(now + 3_600_000).toISOString(),
        validDays: 7,
        proofOfWork: EASY,
        ...fields,
      },
    })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    return created.body.id as number
  }

  async function challengeFor(process: number, couponId: number, user: string): Promise<Challenge> {
    const answer = await http(process, 'GET', `/coupons/${couponId}/challenge`, { user })
    assert.equal(answer.status, 200, JSON.stringify(answer.body))
    assert.equal(answer.headers['cache-control'], 'no-store')
    return answer.body as unknown as Challenge
  }

  it('shows the setting, with the default difficulty when none is given', async () => {
    const id = await createCoupon({ proofOfWork: {} })
    const admin = await http(0, 'GET', `/admin/coupons/${id}`, { admin: true })
    assert.deepEqual(admin.body.proofOfWork, { maxNumber: 100_000 })
    const shopper = await http(1, 'GET', `/coupons/${id}`)
    assert.deepEqual(shopper.body.proofOfWork, { maxNumber: 100_000 })
    const challenge = await challengeFor(1, id, 'viewer')
    assert.equal(challenge.maxnumber, 100_000)
  })

  it('refuses a request without a solution', async () => {
    const id = await createCoupon()
    assertRefused(
      await http(0, 'POST', `/coupons/${id}/issuance`, { user: 'no-work' }),
      403,
      'PROOF_OF_WORK_REQUIRED',
    )
    assertRefused(
      await http(0, 'POST', `/coupons/${id}/issuance`, { user: 'no-work', solution: 'not base64 json' }),
      403,
      'PROOF_OF_WORK_INVALID',
    )
  })

  it('takes a valid solution once: its replay on the other process is refused', async () => {
    const id = await createCoupon()
    const solution = await solve(await challengeFor(0, id, 'alice'))
    const first = await http(0, 'POST', `/coupons/${id}/issuance`, { user: 'alice', solution })
    assert.equal(first.status, 202, JSON.stringify(first.body))
    assert.equal(first.body.status, 'ACCEPTED')
    assertRefused(
      await http(1, 'POST', `/coupons/${id}/issuance`, { user: 'alice', solution }),
      403,
      'PROOF_OF_WORK_REPLAYED',
    )
    const [record] = await env.redis.keys(`${env.redisPrefix}{c:${id}}:pow:*`)
    assert.ok(record !== undefined, "the used solution is recorded under the coupon's hash tag")
    const ttlMs = await env.redis.pttl(record)
    assert.ok(ttlMs > 0 && ttlMs <= 60_000, `recorded until the challenge expires (${ttlMs} ms)`)
  })

  it('refuses a wrong solution, and one solved for another user or coupon', async () => {
    const id = await createCoupon()
    const otherId = await createCoupon()
    const challenge = await challengeFor(1, id, 'bob')
    const right = await solve(challenge)
    const { number } = JSON.parse(atob(right)) as { number: number }
    const wrong = payloadOf(challenge, number === 1 ? 2 : number - 1)
    const forged = btoa(
      JSON.stringify({ ...JSON.parse(atob(right)), salt: challenge.salt.replace('bob', 'eve') }),
    )
    for (const [user, couponId, solution] of [
      ['bob', id, wrong],
      ['eve', id, forged],
      ['eve', id, right],
      ['bob', otherId, right],
    ] as const) {
      const answer = await http(1, 'POST', `/coupons/${couponId}/issuance`, { user, solution })
      assertRefused(answer, 403, 'PROOF_OF_WORK_INVALID')
    }
    const answer = await http(0, 'POST', `/coupons/${id}/issuance`, { user: 'bob', solution: right })
    assert.equal(answer.status, 202, 'the right user still gets it with the right solution')
  })

  it('hands out no challenge before the start, or for a coupon without proof of work', async () => {
    const later = Date.now() + 3_600_000
    const scheduled = await createCoupon({
      issueStartsAt: new Date(later).toISOString(),
      issueEndsAt: new Date(later + 3_600_000).toISOString(),
    })
    assertRefused(
      await http(0, 'GET', `/coupons/${scheduled}/challenge`, { user: 'early' }),
      422,
      'ISSUE_NOT_STARTED',
    )
    const open = await createCoupon({ proofOfWork: undefined })
    assertRefused(
      await http(1, 'GET', `/coupons/${open}/challenge`, { user: 'early' }),
      404,
      'NO_PROOF_OF_WORK',
    )
    const anonymous = await http(1, 'GET', `/coupons/${scheduled}/challenge`)
    assert.equal(anonymous.status, 401, 'a challenge is for a user')
    const issued = await http(1, 'POST', `/coupons/${open}/issuance`, { user: 'early' })
    assert.equal(issued.status, 202, 'a coupon without the setting asks for nothing')
  })

  it('once sold out, answers 410 without asking for a solution (within a second)', async () => {
    const id = await createCoupon({ quantity: 1 })
    const winner = await solve(await challengeFor(0, id, 'first'))
    assert.equal(
      (await http(0, 'POST', `/coupons/${id}/issuance`, { user: 'first', solution: winner })).status,
      202,
    )
    const late = await solve(await challengeFor(0, id, 'second'))
    assertRefused(
      await http(0, 'POST', `/coupons/${id}/issuance`, { user: 'second', solution: late }),
      410,
      'SOLD_OUT',
    )
    const started = Date.now()
    // A new user each time: one user polling every 50 ms would reach the per-user limit (20 per 10 s) and
    // get 429 instead before the second is up on a loaded machine.
    let next = 0
    await eventually(
      async () =>
        (await http(0, 'POST', `/coupons/${id}/issuance`, { user: `third-${next++}` })).status === 410,
      'a request without a solution answered 410 once the stock is known gone',
      3_000,
    )
    assert.ok(Date.now() - started <= 2_500, 'the stock is read again within a second')
    const holder = await http(1, 'POST', `/coupons/${id}/issuance`, { user: 'first' })
    assertRefused(holder, 409, 'ALREADY_REQUESTED')
  })
})

describe('proof of work, an expired challenge', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('powttl', { POW_CHALLENGE_TTL_MS: '1000' }, { runWorkers: false })
  })
  after(() => t.close())

  it('refuses a solution whose challenge expired', async () => {
    const { id } = await t.createCoupon({ proofOfWork: EASY })
    const token = t.tokenFor('slow')
    const challenge = await t.http('GET', `/coupons/${id}/challenge`, { token })
    const solution = await solve(challenge.body as unknown as Challenge)
    await new Promise((resolve) => setTimeout(resolve, 2_100))
    const answer = await t.http('POST', `/coupons/${id}/issuance`, { token, headers: { altcha: solution } })
    assertRefused(answer, 403, 'PROOF_OF_WORK_INVALID')
  })
})
