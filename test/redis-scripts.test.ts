import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { CouponStates, couponScripts } from '../src/issuance/core/coupon-state.ts'
import { streamFields } from '../src/issuance/stream/stream-entries.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { preloadScripts } from '../src/redis/scripts.ts'
import { createTestEnv, type TestEnv } from './support/infra.ts'

describe('script calls batched per event-loop turn (real Redis)', () => {
  let env: TestEnv
  let redis: Redis
  let pipelines = 0
  let evalshas = 0
  before(async () => {
    env = await createTestEnv('scripts')
    redis = env.redis as Redis
    // As the service does at startup: on a Redis that never saw the scripts, each call of the first batch
    // would be answered NOSCRIPT and sent again alone, and the pipeline counts below would depend on test order.
    await preloadScripts(redis)
    // Count the pipelines the client sends and the EVALSHAs in them; every command still runs on the real
    // server.
    const pipeline = redis.pipeline.bind(redis)
    redis.pipeline = ((...args: Parameters<Redis['pipeline']>) => {
      pipelines += 1
      const created = pipeline(...args)
      const evalsha = created.evalsha.bind(created)
      created.evalsha = ((...evalArgs: Parameters<typeof evalsha>) => {
        evalshas += 1
        return evalsha(...evalArgs)
      }) as typeof evalsha
      return created
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

  it('sends the calls made while a pipeline is out together once it is back, in the order they were made', async () => {
    await redis.hset(state('d'), 'stock', 0)
    // Redis runs one script at a time: a busy script on another connection holds the first pipeline out.
    const blocker = redis.duplicate()
    await blocker.connect()
    after(() => blocker.disconnect())
    // Long enough that the four later turns (about 40 ms) fall inside it even on a loaded machine.
    const busyMs = 800
    const busy = blocker.eval(
      `local t = redis.call('TIME'); local start = t[1] * 1000 + t[2] / 1000; local now = start
       while now - start < tonumber(ARGV[1]) do t = redis.call('TIME'); now = t[1] * 1000 + t[2] / 1000 end
       return 1`,
      0,
      busyMs,
    )
    await new Promise((resolve) => setTimeout(resolve, 30))
    const before = pipelines
    const first = couponScripts.addSoldOut.runBatched(redis, [state('d')], [1])
    const later: Promise<number | undefined>[] = []
    for (let turn = 0; turn < 4; turn++) {
      await new Promise((resolve) => setTimeout(resolve, 10))
      later.push(couponScripts.addSoldOut.runBatched(redis, [state('d')], [1]))
    }
    const replies = await Promise.all([first, ...later])
    await busy
    assert.equal(pipelines - before, 2, 'the first call alone, then the four made in four later turns')
    assert.deepEqual(replies, [1, 2, 3, 4, 5], 'each call ran in the order it was made')
  })

  it('rejects a call with the wrong number of keys before sending anything', async () => {
    await assert.rejects(couponScripts.addSoldOut.runBatched(redis, [], [1]), /takes 1 keys, got 0/)
  })

  describe('admissions of one turn for one coupon share one call', () => {
    const loaded = async (couponId: number, fields: Record<string, string | number>) => {
      await redis.hset(couponKeys(env.redisPrefix, couponId).state, { seq: 0, ...fields })
    }

    it('admits in request order and refuses a duplicate inside the call with the record the first one wrote', async () => {
      const states = new CouponStates(env)
      await loaded(11, { stock: 3 })
      const beforeCalls = evalshas
      const users = ['ann', 'bob', 'ann', 'cid', 'dan']
      const replies = await Promise.all(users.map((user) => states.of(11).admitToStream(user)))
      assert.equal(evalshas - beforeCalls, 1, 'one EVALSHA for the five admissions')
      const time = replies[0]?.kind === 'admitted' ? replies[0].requestedAtMs : -1
      assert.deepEqual(replies, [
        { kind: 'admitted', position: 1, requestedAtMs: time },
        { kind: 'admitted', position: 2, requestedAtMs: time },
        {
          kind: 'alreadyRequested',
          record: { status: 'ACCEPTED', position: 1, requestedAtMs: time },
        },
        { kind: 'admitted', position: 3, requestedAtMs: time },
        { kind: 'soldOut' },
      ])
      const stream = await redis.xrange(couponKeys(env.redisPrefix, 11).stream, '-', '+')
      assert.deepEqual(
        stream.map(([, fields]) => streamFields(fields)),
        ['ann', 'bob', 'cid'].map((userId, i) => ({ userId, position: i + 1, requestedAtMs: time })),
        'the stream in request order',
      )
      assert.deepEqual(await redis.hmget(couponKeys(env.redisPrefix, 11).state, 'stock', 'seq', 'soldOut'), [
        '0',
        '3',
        '1',
      ])
    })

    it('one failing admission rejects only its own request', async () => {
      const states = new CouponStates(env)
      // A corrupt soldOut counter: only an admission refused as sold out writes it.
      await loaded(12, { stock: 1, soldOut: 'not-a-number' })
      const results = await Promise.allSettled(
        ['ann', 'bob', 'ann'].map((user) => states.of(12).admitToStream(user)),
      )
      assert.equal(results[0]?.status === 'fulfilled' && results[0].value.kind, 'admitted')
      assert.equal(results[1]?.status, 'rejected')
      assert.match(String((results[1] as PromiseRejectedResult).reason), /not an integer/)
      assert.equal(results[2]?.status === 'fulfilled' && results[2].value.kind, 'alreadyRequested')
    })

    it('splits a turn of more than 128 admissions into calls of at most 128, in order', async () => {
      const states = new CouponStates(env)
      await loaded(13, { stock: 1_000 })
      const beforeCalls = evalshas
      const replies = await Promise.all(
        Array.from({ length: 300 }, (_, i) => states.of(13).admitToStream(`u${i}`)),
      )
      assert.equal(evalshas - beforeCalls, 3, '128 + 128 + 44')
      assert.deepEqual(
        replies.map((reply) => (reply.kind === 'admitted' ? reply.position : -1)),
        Array.from({ length: 300 }, (_, i) => i + 1),
      )
    })
  })
})
