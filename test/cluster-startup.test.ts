/**
 * Settings of the cluster and of the replica acknowledgement: a bad REDIS_CLUSTER_NODES stops startup with one
 * line naming it, and REDIS_REPLICA_ACK on a Redis without a replica refuses to acknowledge (503).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../bench/lib/infra.ts'
import { loadConfig } from '../src/config/config.ts'
import { startTestApp, TEST_ADMIN_TOKEN, TEST_JWT_SECRET, type TestApp } from './support/app.ts'
import { createTestEnv, issuedRows, TEST_REDIS_ADDRESS, type TestEnv } from './support/infra.ts'
import { ROOT } from './support/processes.ts'

async function serve(env: Record<string, string>) {
  const child = spawn(process.execPath, ['bin/coupon-rush.mjs', 'serve'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const status = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { status, lines: stderr.trim().split('\n') }
}

describe('REDIS_CLUSTER_NODES at startup', () => {
  let env: TestEnv
  let common: Record<string, string>
  before(async () => {
    env = await createTestEnv('clusterstart')
    common = { ...env.childEnv, JWT_SECRET: TEST_JWT_SECRET, ADMIN_TOKEN: TEST_ADMIN_TOKEN, PORT: '0' }
  })
  after(() => env.close())

  it('stops with one line naming REDIS_CLUSTER_NODES when no node answers', async () => {
    const [a, b] = [await freePort(), await freePort()]
    const result = await serve({ ...common, REDIS_CLUSTER_NODES: `127.0.0.1:${a},127.0.0.1:${b}` })
    assert.equal(result.status, 1)
    assert.equal(result.lines.length, 1, result.lines.join('\n'))
    assert.match(
      result.lines[0]!,
      new RegExp(
        `^cannot start: Redis Cluster at REDIS_CLUSTER_NODES=127.0.0.1:${a},127.0.0.1:${b}: no node answers`,
      ),
    )
  })

  it('stops with one line naming REDIS_CLUSTER_NODES when a node is not in cluster mode', async () => {
    const node = `${TEST_REDIS_ADDRESS.host}:${TEST_REDIS_ADDRESS.port}`
    const result = await serve({ ...common, REDIS_CLUSTER_NODES: node })
    assert.equal(result.status, 1)
    assert.deepEqual(result.lines, [
      `cannot start: Redis Cluster at REDIS_CLUSTER_NODES=${node}: ${node} is not in cluster mode`,
    ])
  })
})

describe('REDIS_REPLICA_ACK', () => {
  it('reads none (the default) or a number of replicas, with its timeout', () => {
    assert.equal(loadConfig({}).redisReplicaAck, undefined)
    assert.deepEqual(loadConfig({ REDIS_REPLICA_ACK: '1' }).redisReplicaAck, { replicas: 1, timeoutMs: 500 })
    assert.deepEqual(
      loadConfig({ REDIS_REPLICA_ACK: '2', REDIS_REPLICA_ACK_TIMEOUT_MS: '100' }).redisReplicaAck,
      { replicas: 2, timeoutMs: 100 },
    )
    assert.throws(
      () => loadConfig({ REDIS_REPLICA_ACK: 'all' }),
      /REDIS_REPLICA_ACK must be none or a number/,
    )
    assert.throws(() => loadConfig({ REDIS_REPLICA_ACK_TIMEOUT_MS: '5000' }), /REDIS_REPLICA_ACK_TIMEOUT_MS/)
  })

  describe('on a Redis without a replica', () => {
    let t: TestApp
    before(async () => {
      t = await startTestApp('replicaack', { REDIS_REPLICA_ACK: '1', REDIS_REPLICA_ACK_TIMEOUT_MS: '50' })
    })
    after(() => t.close())

    it('answers 503 with Retry-After instead of acknowledging, and writes nothing on', async () => {
      const coupon = await t.createCoupon({ quantity: 5, issueMode: 'stream' })
      const answer = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('ack-a') })
      assert.equal(answer.status, 503)
      assert.equal(answer.body.code, 'UNAVAILABLE')
      assert.equal(answer.headers['retry-after'], '1')
      // The admission happened in Redis (a retry is told so), but no writer takes it on without a replica.
      const again = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('ack-a') })
      assert.equal(again.status, 409)
      await sleep(1_000)
      assert.deepEqual(await issuedRows(t.env.db, coupon.id), [])
      // sync answers from its Postgres transaction, which no Redis replica needs to confirm.
      const syncCoupon = await t.createCoupon({ quantity: 1, issueMode: 'sync' })
      const sync = await t.http('POST', `/coupons/${syncCoupon.id}/issuance`, { token: t.tokenFor('ack-b') })
      assert.equal(sync.status, 201)
    })
  })
})
