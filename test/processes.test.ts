import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { freePort } from '../bench/lib/infra.ts'
import { signUserToken } from '../src/auth/tokens.ts'
import { runConcurrently, TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from './support/app.ts'
import { createTestEnv, eventually, issuedRows, type TestEnv } from './support/infra.ts'
import { type Child, spawnNode, waitUntilReady } from './support/processes.ts'

async function call(port: number, method: 'GET' | 'POST', path: string, token: string, body?: unknown) {
  const response = await request(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> }
}

describe('API and worker processes side by side', () => {
  let env: TestEnv
  const children: Child[] = []
  const ports: number[] = []

  before(async () => {
    env = await createTestEnv('procs')
    const common = {
      ...env.childEnv,
      JWT_SECRET: TEST_JWT_SECRET,
      ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      RATE_LIMIT_PER_USER: '1000',
    }
    // Two API processes without workers, and one worker process: the deployment the README describes.
    for (let i = 0; i < 2; i++) {
      const port = await freePort()
      ports.push(port)
      children.push(
        spawnNode('bin/coupon-rush.mjs', { ...common, PORT: String(port), RUN_WORKERS: 'false' }, ['serve']),
      )
    }
    children.push(spawnNode('bin/coupon-rush.mjs', common, ['worker']))
    for (const port of ports) await waitUntilReady(port)
  })
  after(async () => {
    await Promise.all(children.map((child) => child.kill('SIGTERM')))
    await env.close()
  })

  it('keeps every invariant when two API processes admit the same sale and a separate worker writes it', async () => {
    const now = Date.now()
    const created = await call(ports[0]!, 'POST', '/admin/coupons', TEST_ADMIN_TOKEN, {
      name: 'Two servers',
      discount: { type: 'FIXED', amount: 1000 },
      quantity: 50,
      issueStartsAt: new Date(now - 1_000).toISOString(),
      issueEndsAt: new Date(now + 600_000).toISOString(),
      validDays: 7,
    })
    assert.equal(created.status, 201)
    const couponId = created.body.id as number
    // The coupon was created through the first process; the second learns of it from Postgres.
    const users = Array.from({ length: 1200 }, (_, i) => `p${i}`)
    const requests = [...users, ...users.slice(0, 200)]
    const answers = await runConcurrently(requests.length, 64, async (i) => {
      const userId = requests[i]!
      const answer = await call(
        ports[i % 2]!,
        'POST',
        `/coupons/${couponId}/issuance`,
        signUserToken(TEST_JWT_SECRET, userId),
      )
      return { userId, ...answer }
    })
    const accepted = answers.filter((a) => a.status === 202)
    assert.equal(accepted.length, 50)
    assert.ok(answers.every((a) => [202, 409, 410].includes(a.status)))
    assert.deepEqual(
      accepted.map((a) => Number(a.body.position)).sort((x, y) => x - y),
      Array.from({ length: 50 }, (_, i) => i + 1),
    )
    await eventually(
      async () => (await issuedRows(env.db, couponId)).length === 50,
      'the worker process wrote every row',
    )
    const rows = await issuedRows(env.db, couponId)
    assert.deepEqual(rows.map((r) => r.user_id).sort(), accepted.map((a) => a.userId).sort())
    // A decision written by the worker is visible through either API process.
    const status = await call(
      ports[1]!,
      'GET',
      `/coupons/${couponId}/issuance`,
      signUserToken(TEST_JWT_SECRET, accepted[0]!.userId),
    )
    assert.equal(status.body.status, 'ISSUED')
  })
})
