/**
 * The limits held in Redis (src/http/plugins/limits.ts): per client address on every request, per user on
 * issuance and status reads, shared by every process, refused from memory once over; TRUST_PROXY; unknown
 * coupon ids answered from memory.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { request } from 'undici'
import { freePort } from '../bench/lib/infra.ts'
import { type OwnRedis, startOwnRedis } from '../bench/lib/redis-server.ts'
import { signUserToken } from '../src/auth/tokens.ts'
import {
  type HttpResult,
  runConcurrently,
  startTestApp,
  TEST_ADMIN_TOKEN,
  TEST_JWT_SECRET,
  type TestApp,
} from './support/app.ts'
import { createTestEnv, eventually, insertTestCoupon, type TestEnv } from './support/infra.ts'
import { type Child, spawnNode, waitUntilReady } from './support/processes.ts'

const passed = (answers: HttpResult[]) => answers.filter((answer) => answer.status !== 429).length

function assertRateLimited(answer: HttpResult | undefined) {
  assert.equal(answer?.status, 429)
  assert.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8')
  assert.equal(answer.body.code, 'RATE_LIMITED')
  assert.ok(Number(answer.headers['retry-after']) >= 1, 'Retry-After in whole seconds')
}

describe('the address limit', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp(
      'addrlimit',
      { ADDRESS_LIMIT_PER_WINDOW: '300', ADDRESS_LIMIT_WINDOW_MS: '60000' },
      { runWorkers: false },
    )
  })
  after(() => t.close())

  it('limits 5,000 accounts from one address to the address limit', async () => {
    // Straight into Postgres: creating it over HTTP would count against the address too.
    const coupon = await insertTestCoupon(t.env.db, { quantity: 1_000 })
    const answers = await runConcurrently(5_000, 16, (i) =>
      t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(`bot-${i}`) }),
    )
    assert.equal(passed(answers), 300, 'the first 300 requests of the window pass, whatever the account')
    assert.equal(answers.filter((answer) => answer.status === 202).length, 300)
    assertRateLimited(answers.find((answer) => answer.status === 429))
  })
})

describe('401s, 400s and unknown routes', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('addrbad', { ADDRESS_LIMIT_PER_WINDOW: '10', ADDRESS_LIMIT_WINDOW_MS: '60000' })
  })
  after(() => t.close())

  it('count against the address limit', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await t.http('POST', '/coupons/1/issuance')).status)
    for (let i = 0; i < 4; i++) statuses.push((await t.http('GET', '/coupons/not-a-number')).status)
    for (let i = 0; i < 2; i++) statuses.push((await t.http('GET', '/no/such/route')).status)
    assert.deepEqual(statuses, [401, 401, 401, 401, 400, 400, 400, 400, 404, 404])
    // The window's ten are spent: even a well-formed, authenticated request is refused now.
    const next = await t.http('GET', '/coupons/1/issuance', { token: t.tokenFor('honest') })
    assertRateLimited(next)
  })
})

describe('TRUST_PROXY', () => {
  const limited = { ADDRESS_LIMIT_PER_WINDOW: '5', ADDRESS_LIMIT_WINDOW_MS: '60000' }
  const fromAddress = (t: TestApp, address: string) =>
    runConcurrently(6, 1, () => t.http('GET', '/healthz', { headers: { 'x-forwarded-for': address } }))

  it('counts distinct forwarded addresses apart behind a trusted proxy', async () => {
    const t = await startTestApp(
      'proxytrust',
      { ...limited, TRUST_PROXY: '127.0.0.1' },
      { runWorkers: false },
    )
    try {
      const first = await fromAddress(t, '203.0.113.1')
      assert.equal(passed(first), 5)
      assertRateLimited(first[5])
      // A client that put its own X-Forwarded-For before the proxy's entry is still the address the proxy saw.
      const second = await fromAddress(t, '203.0.113.1, 203.0.113.2')
      assert.equal(passed(second), 5, 'another address has a window of its own')
    } finally {
      await t.close()
    }
  })

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', async () => {
    for (const trustProxy of ['none', '10.0.0.0/8']) {
      const t = await startTestApp(
        'proxyforge',
        { ...limited, TRUST_PROXY: trustProxy },
        { runWorkers: false },
      )
      try {
        const answers = await runConcurrently(8, 1, (i) =>
          t.http('GET', '/healthz', { headers: { 'x-forwarded-for': `198.51.100.${i + 1}` } }),
        )
        assert.equal(passed(answers), 5, `TRUST_PROXY=${trustProxy}: every request counted as 127.0.0.1`)
      } finally {
        await t.close()
      }
    }
  })
})

describe('a key over its limit', () => {
  let redis: OwnRedis
  let t: TestApp
  let stats: Redis
  before(async () => {
    redis = await startOwnRedis({ persistence: 'none' })
    stats = new Redis(redis.url)
    t = await startTestApp(
      'blocked',
      {
        REDIS_URL: redis.url,
        TRUST_PROXY: '127.0.0.1',
        ADDRESS_LIMIT_PER_WINDOW: '50',
        ADDRESS_LIMIT_WINDOW_MS: '60000',
        RATE_LIMIT_PER_USER: '1000',
      },
      { runWorkers: false },
    )
  })
  after(async () => {
    await t?.close()
    stats?.disconnect()
    await redis?.destroy()
  })

  /** Commands this Redis has run so far, by name (INFO commandstats). */
  async function commandCalls(): Promise<number> {
    const info = await stats.info('commandstats')
    let calls = 0
    for (const match of info.matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+)/gm)) {
      if (match[1] !== 'info') calls += Number(match[2])
    }
    return calls
  }

  it('costs no Redis command for addresses asking a few times (the local pre-count)', async () => {
    const before = await commandCalls()
    // 10% of the limit of 50: the first five requests of each address pass on this process's count alone.
    const answers = await runConcurrently(200, 16, (i) =>
      t.http('GET', '/healthz', { headers: { 'x-forwarded-for': `203.0.113.${i % 100}` } }),
    )
    assert.equal(passed(answers), 200)
    assert.equal((await commandCalls()) - before, 0, 'no Redis command')
  })

  it('is refused from process memory: a flood costs no Redis command', async () => {
    const flood = (count: number) => runConcurrently(count, 16, () => t.http('GET', '/coupons/1/issuance'))
    const opening = await flood(60)
    assert.equal(passed(opening), 50)
    const before = await commandCalls()
    const answers = await flood(2_000)
    const commands = (await commandCalls()) - before
    assert.equal(passed(answers), 0, 'every request of the flood refused')
    assertRateLimited(answers[0])
    assert.ok(commands <= 5, `2,000 refused requests ran ${commands} Redis commands`)
  })
})

describe('unknown coupon ids', () => {
  let t: TestApp
  let queries = 0
  before(async () => {
    // A miss remembered for a minute: a coupon created meanwhile must show through the coupon-changed channel.
    t = await startTestApp('misses', { COUPON_MISS_TTL_MS: '60000' }, { runWorkers: false })
    const db = t.app.db
    const query = db.query.bind(db) as (...args: unknown[]) => unknown
    // A spy on the real pool, counting every query the app sends.
    ;(db as unknown as { query: (...args: unknown[]) => unknown }).query = (...args) => {
      queries++
      return query(...args)
    }
  })
  after(() => t.close())

  it('costs at most one Postgres query per unknown id, not one per lookup', async () => {
    const unknownIds = Array.from({ length: 20 }, (_, i) => 900_000 + i)
    queries = 0
    const answers = await runConcurrently(4_000, 16, (i) => {
      const id = unknownIds[i % unknownIds.length]!
      return i % 2 === 0
        ? t.http('GET', `/coupons/${id}`)
        : t.http('GET', `/coupons/${id}/issuance`, { token: t.tokenFor(`reader-${i % 7}`) })
    })
    assert.ok(answers.every((answer) => answer.body.code === 'COUPON_NOT_FOUND'))
    assert.ok(queries <= unknownIds.length, `4,000 lookups of 20 unknown ids ran ${queries} queries`)
  })

  it('shows a coupon created after its id was looked up, well before the miss expires', async () => {
    const existing = await t.createCoupon()
    const nextId = existing.id + 1
    assert.equal((await t.http('GET', `/coupons/${nextId}`)).status, 404)
    const created = await t.createCoupon()
    assert.equal(created.id, nextId)
    await eventually(
      async () => (await t.http('GET', `/coupons/${nextId}`)).status === 200,
      'the new coupon visible',
      2_000,
    )
  })
})

describe('two server processes', () => {
  let env: TestEnv
  const children: Child[] = []
  const ports: number[] = []

  before(async () => {
    env = await createTestEnv('limitprocs')
    for (let i = 0; i < 2; i++) {
      const port = await freePort()
      ports.push(port)
      children.push(
        spawnNode(
          'bin/coupon-rush.mjs',
          {
            ...env.childEnv,
            JWT_SECRET: TEST_JWT_SECRET,
            ADMIN_TOKEN: TEST_ADMIN_TOKEN,
            RATE_LIMIT_PER_USER: '20',
            RATE_LIMIT_WINDOW_MS: '60000',
            PORT: String(port),
            RUN_WORKERS: 'false',
          },
          ['serve'],
        ),
      )
    }
    for (const port of ports) await waitUntilReady(port)
  })
  after(async () => {
    await Promise.all(children.map((child) => child.kill('SIGTERM')))
    await env.close()
  })

  /** One user's flood of `count` issuance requests spread over `onPorts`: how many were let through. */
  async function flood(userId: string, couponId: number, onPorts: number[], count: number) {
    const token = signUserToken(TEST_JWT_SECRET, userId)
    const statuses = await runConcurrently(count, 16, async (i) => {
      const response = await request(
        `http://127.0.0.1:${onPorts[i % onPorts.length]}/coupons/${couponId}/issuance`,
        { method: 'POST', headers: { authorization: `Bearer ${token}` } },
      )
      await response.body.text()
      return response.statusCode
    })
    for (const status of statuses) assert.ok([202, 409, 429].includes(status), `unexpected ${status}`)
    return statuses.filter((status) => status !== 429).length
  }

  it('let one user flooding both through exactly as often as one process does', async () => {
    const coupon = await insertTestCoupon(env.db, { quantity: 100 })
    const alone = await flood('solo', coupon.id, [ports[0]!], 200)
    const together = await flood('duo', coupon.id, ports, 400)
    assert.equal(alone, 20, 'one process lets RATE_LIMIT_PER_USER through')
    assert.equal(together, alone, 'two processes let through what one does')
  })
})
