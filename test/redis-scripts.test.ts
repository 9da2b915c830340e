import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { couponScripts } from '../src/issuance/core/coupon-state.ts'
import { createTestEnv, type TestEnv } from './support/infra.ts'

describe('script calls batched per event-loop turn (real Redis)', () => {
  let env: TestEnv
  let redis: Redis
  let pipelines = 0
  before(async () => {
    env = await createTestEnv('scripts')
    redis = env.redis as Redis
    // Count the pipelines the client sends; every command still runs on the real server.
    const pipeline = redis.pipeline.bind(redis)
    redis.pipeline = ((...args: Parameters<Redis['pipeline']>) => {
      pipelines += 1
      return pipeline(...args)
    }) as Redis['pipeline']
  })
  after(() => env.close())

  const state = (name: string) => `${env.redisPrefix}{c:1}:${name}`

  it('sends the calls of one turn in one pipeline and gives each call its own reply', async () => {
    await redis.hset(state('a'), 'stock', 0)
    const before = pipelines
    const replies = await Promise.all(
      Array.from({ length: 50 }, () => couponScripts.addSoldOut.runBatched(redis, [state('a')], [1])),
    )
    assert.equal(pipelines - before, 1, 'one pipeline for 50 calls')
    const counts = replies.map((count) => count ?? -1).sort((x, y) => x - y)
    assert.deepEqual(
      counts,
      Array.from({ length: 50 }, (_, i) => i + 1),
      'each call saw its own increment',
    )
    assert.equal(await redis.hget(state('a'), 'soldOut'), '50')
  })

  it('fails only the call whose command failed, and answers the others', async () => {
    await redis.hset(state('b'), 'stock', 0)
    await redis.set(state('not-a-hash'), 'x')
    const results = await Promise.allSettled([
      couponScripts.addSoldOut.runBatched(redis, [state('b')], [2]),
      couponScripts.addSoldOut.runBatched(redis, [state('not-a-hash')], [2]),
      couponScripts.addSoldOut.runBatched(redis, [state('missing')], [2]),
    ])
    assert.deepEqual(results[0], { status: 'fulfilled', value: 2 })
    assert.equal(results[1]!.status, 'rejected')
    assert.match(String((results[1] as PromiseRejectedResult).reason), /WRONGTYPE/)
    assert.deepEqual(
      results[2],
      { status: 'fulfilled', value: undefined },
      'a lost state is reported, not created',
    )
  })

  it('loads the script again when Redis has forgotten it (NOSCRIPT)', async () => {
    await redis.hset(state('c'), 'stock', 0)
    await redis.script('FLUSH')
    const replies = await Promise.all(
      Array.from({ length: 5 }, () => couponScripts.addSoldOut.runBatched(redis, [state('c')], [1])),
    )
    assert.equal(replies.length, 5)
    assert.equal(await redis.hget(state('c'), 'soldOut'), '5')
  })

  it('rejects a call with the wrong number of keys before sending anything', async () => {
    await assert.rejects(couponScripts.addSoldOut.runBatched(redis, [], [1]), /takes 1 keys, got 0/)
  })
})
