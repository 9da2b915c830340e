import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { CouponStates, couponScripts } from '../src/issuance/core/coupon-state.ts'
import { decodeRecord, encodeRecord } from '../src/issuance/core/record.ts'
import { connectRedis, createRedis } from '../src/redis/client.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { definedScriptNames, replyCode, SCRIPT_CODES, scriptFileNames } from '../src/redis/scripts.ts'
// Imported for the wrappers they define (every script file has exactly one).
import '../src/issuance/stream/stream-entries.ts'
import '../src/issuance/sync/fair-lock.ts'
import '../src/redis/leases.ts'
import { createTestEnv, eventually, TEST_REDIS_URL, type TestEnv } from './support/infra.ts'

describe('the issuance record codec', () => {
  it('writes an undecided record with empty decision fields, as the admission scripts do', () => {
    assert.equal(
      encodeRecord({ status: 'ACCEPTED', position: 3, requestedAtMs: 1700000000000 }),
      'A|3|1700000000000||',
    )
    assert.equal(
      encodeRecord({
        status: 'ISSUED',
        position: 3,
        requestedAtMs: 1700000000000,
        userCouponId: 42,
        decidedAtMs: 1700000000500,
      }),
      'I|3|1700000000000|42|1700000000500',
    )
    assert.equal(
      encodeRecord({ status: 'SOLD_OUT', position: 9, requestedAtMs: 0, decidedAtMs: 5 }),
      'X|9|0||5',
    )
  })

  it('reads every status letter, and leaves absent decision fields out', () => {
    assert.deepEqual(decodeRecord('P|1|10||'), { status: 'PENDING', position: 1, requestedAtMs: 10 })
    assert.deepEqual(decodeRecord('I|2|10|7|20'), {
      status: 'ISSUED',
      position: 2,
      requestedAtMs: 10,
      userCouponId: 7,
      decidedAtMs: 20,
    })
    assert.deepEqual(decodeRecord('X|4|10||30'), {
      status: 'SOLD_OUT',
      position: 4,
      requestedAtMs: 10,
      decidedAtMs: 30,
    })
  })

  it('refuses a record with an unknown status letter', () => {
    assert.throws(() => decodeRecord('Z|1|2||'), /bad issuance record "Z\|1\|2\|\|"/)
    assert.throws(() => decodeRecord(''), /bad issuance record/)
  })
})

describe('the script layer', () => {
  it('takes the script names from the .lua files, and every file has exactly one typed wrapper', () => {
    const files = readdirSync(new URL('../src/redis/scripts/', import.meta.url))
      .filter((file) => file.endsWith('.lua'))
      .map((file) => file.replace(/-\d+\.lua$/, ''))
    assert.deepEqual([...scriptFileNames()].sort(), files.sort())
    assert.deepEqual([...definedScriptNames()].sort(), files.sort())
  })

  it('maps each negative code in one table, and refuses a code no script returns', () => {
    assert.deepEqual(SCRIPT_CODES, {
      [-1]: 'notLoaded',
      [-2]: 'alreadyRequested',
      [-3]: 'soldOut',
      [-4]: 'notStarted',
      [-5]: 'ended',
      [-6]: 'paused',
      [-7]: 'prequeued',
      [-8]: 'notShuffled',
    })
    assert.equal(replyCode('x', [5]), 5)
    assert.equal(replyCode('x', [-3]), 'soldOut')
    assert.throws(() => replyCode('x', [-9]), /unknown code -9/)
    assert.throws(() => replyCode('x', ['1']), /not an integer/)
    assert.throws(() => replyCode('x', 'OK'), /not an array/)
  })
})

describe('script wrappers decode the replies of real Redis', () => {
  let env: TestEnv
  let states: CouponStates
  before(async () => {
    env = await createTestEnv('store')
    states = new CouponStates(env)
  })
  after(() => env.close())

  const loaded = async (couponId: number, stock: number) => {
    await env.redis.hset(couponKeys(env.redisPrefix, couponId).state, 'stock', stock, 'seq', 0)
  }

  it('admitStream: admitted with position and server time, then already requested with the record, sold out, not loaded', async () => {
    assert.deepEqual(await states.of(1).admitToStream('ann'), { kind: 'notLoaded' })
    await loaded(1, 1)
    const first = await states.of(1).admitToStream('ann')
    assert.equal(first.kind, 'admitted')
    if (first.kind !== 'admitted') return
    assert.equal(first.position, 1)
    assert.ok(Math.abs(first.requestedAtMs - Date.now()) < 60_000, 'a millisecond clock')
    // The Lua record encoding agrees with the TypeScript one.
    const raw = await env.redis.hget(couponKeys(env.redisPrefix, 1).users, 'ann')
    assert.equal(raw, encodeRecord({ status: 'ACCEPTED', position: 1, requestedAtMs: first.requestedAtMs }))
    assert.deepEqual(await states.of(1).admitToStream('ann'), {
      kind: 'alreadyRequested',
      record: { status: 'ACCEPTED', position: 1, requestedAtMs: first.requestedAtMs },
    })
    assert.deepEqual(await states.of(1).admitToStream('bob'), { kind: 'soldOut' })
    assert.equal(await env.redis.hget(couponKeys(env.redisPrefix, 1).state, 'soldOut'), '1')
  })

  it('admitQueue: the same codes, with a pending record', async () => {
    assert.deepEqual(await states.of(2).admitToQueue('ann'), { kind: 'notLoaded' })
    await loaded(2, 1)
    const first = await states.of(2).admitToQueue('ann')
    assert.equal(first.kind, 'admitted')
    const again = await states.of(2).admitToQueue('ann')
    assert.equal(again.kind, 'alreadyRequested')
    assert.equal(again.kind === 'alreadyRequested' && again.record.status, 'PENDING')
    await env.redis.hset(couponKeys(env.redisPrefix, 2).state, 'stock', 0)
    assert.deepEqual(await states.of(2).admitToQueue('bob'), { kind: 'soldOut' })
  })

  it('the counters scripts answer undefined for a lost state and never create one', async () => {
    const { state } = couponKeys(env.redisPrefix, 3)
    assert.equal(await couponScripts.addSoldOut.run(env.redis, [state], [2]), undefined)
    assert.equal(await couponScripts.lowerQueueStock.run(env.redis, [state], [1]), undefined)
    assert.equal(await couponScripts.countSyncRequest.run(env.redis, [state], ['soldOut', 0, 0]), undefined)
    assert.equal(await env.redis.exists(state), 0, 'no partial state hash')
    await loaded(3, 5)
    assert.equal(await couponScripts.addSoldOut.run(env.redis, [state], [2]), 2)
    assert.equal(await couponScripts.lowerQueueStock.run(env.redis, [state], [3]), 3)
    assert.equal(await couponScripts.lowerQueueStock.run(env.redis, [state], [4]), 3, 'never raised')
  })

  it('mergeRecords never moves a record back; restoreState restores once', async () => {
    const keys = couponKeys(env.redisPrefix, 4)
    await env.redis.hset(keys.users, 'ann', 'I|1|10|7|20', 'bob', 'A|2|10||')
    const merged = await couponScripts.mergeRecords.run(
      env.redis,
      [keys.users],
      ['ann', 'A|1|10||', 'bob', 'I|2|10|8|30', 'cy', 'A|3|10||'],
    )
    assert.equal(merged, 2)
    assert.equal((await states.of(4).readRecord('ann'))?.status, 'ISSUED')
    assert.equal((await states.of(4).readRecord('bob'))?.userCouponId, 8)
    assert.equal((await states.of(4).readRecord('cy'))?.status, 'ACCEPTED')
    assert.equal(await couponScripts.restoreState.run(env.redis, [keys.state], [7, 3, 2]), true)
    assert.equal(await couponScripts.restoreState.run(env.redis, [keys.state], [9, 3, 2]), false)
    assert.equal(await env.redis.hget(keys.state, 'stock'), '7')
  })

  it('markDecided moves records forward and counts issued ones, without recreating a lost state', async () => {
    const keys = couponKeys(env.redisPrefix, 6)
    const args = ['ann', 'I|1|10|7|20']
    await env.redis.hset(keys.users, 'ann', 'A|1|10||')
    assert.equal(
      await couponScripts.markDecided.run(env.redis, [keys.users, keys.queue, keys.state], args),
      1,
    )
    assert.equal(await env.redis.exists(keys.state), 0, 'no partial state hash')
    assert.equal(
      await couponScripts.markDecided.run(env.redis, [keys.users, keys.queue, keys.state], args),
      0,
    )
    await loaded(6, 0)
    await env.redis.hset(keys.users, 'bob', 'A|2|10||')
    const bob = ['bob', 'I|2|10|8|20']
    assert.equal(await couponScripts.markDecided.run(env.redis, [keys.users, keys.queue, keys.state], bob), 1)
    assert.equal(await env.redis.hget(keys.state, 'issued'), '1')
  })

  it('settleIssued records a batch, acknowledges its entries, trims only what the group is done with and publishes the decisions', async () => {
    const keys = couponKeys(env.redisPrefix, 8)
    await loaded(8, 0)
    await env.redis.xgroup('CREATE', keys.stream, 'writers', '0', 'MKSTREAM')
    const ids = [
      await env.redis.xadd(keys.stream, '*', 'u', 'ann', 'p', '1', 't', '10'),
      await env.redis.xadd(keys.stream, '*', 'u', 'bob', 'p', '2', 't', '10'),
      await env.redis.xadd(keys.stream, '*', 'u', 'cy', 'p', '3', 't', '10'),
    ].map(String)
    await env.redis.hset(keys.users, 'ann', 'A|1|10||', 'bob', 'A|2|10||', 'cy', 'A|3|10||')
    // Two entries read (the batch), the third still unread.
    await env.redis.xreadgroup('GROUP', 'writers', 'w1', 'COUNT', 2, 'STREAMS', keys.stream, '>')
    const keyList = [keys.users, keys.queue, keys.state, keys.stream]
    const channel = `${env.redisPrefix}settle-decisions`
    const pairs = ['ann', 'I|1|10|7|20', 'bob/x', 'X|2|10||20']
    const args = ['writers', 2, channel, 8, ids[0]!, ids[1]!, ...pairs]
    const subscriber = createRedis({ url: TEST_REDIS_URL, clusterNodes: [] })
    try {
      await connectRedis(subscriber)
      const messages: unknown[] = []
      subscriber.on('message', (_channel: string, message: string) => messages.push(JSON.parse(message)))
      await subscriber.subscribe(channel)
      await env.redis.hset(keys.users, 'bob/x', 'A|2|10||')
      assert.deepEqual(await couponScripts.settleIssued.run(env.redis, keyList, args), {
        changed: 2,
        acknowledged: 2,
        trimmed: 2,
      })
      await eventually(async () => messages.length === 1, 'the decisions were published')
      assert.deepEqual(messages, [{ couponId: 8, pairs }], 'one DecisionMessage with every pair')
    } finally {
      subscriber.disconnect()
    }
    assert.deepEqual(await env.redis.hmget(keys.users, 'ann', 'bob/x', 'cy'), [
      'I|1|10|7|20',
      'X|2|10||20',
      'A|3|10||',
    ])
    assert.equal(await env.redis.hget(keys.state, 'issued'), '1', 'only the ISSUED decision is counted')
    const left = await env.redis.xrange(keys.stream, '-', '+')
    assert.deepEqual(
      left.map(([id]) => id),
      [ids[2]],
      'the unread entry stays',
    )
    // A replay (another writer settling the same batch) changes nothing.
    assert.deepEqual(await couponScripts.settleIssued.run(env.redis, keyList, args), {
      changed: 0,
      acknowledged: 0,
      trimmed: 0,
    })
    assert.equal(await env.redis.hget(keys.state, 'issued'), '1')
  })

  it('settleIssued settles a batch larger than Lua can unpack at once (9,000 entries)', async () => {
    const keys = couponKeys(env.redisPrefix, 9)
    await loaded(9, 0)
    await env.redis.xgroup('CREATE', keys.stream, 'writers', '0', 'MKSTREAM')
    const users = Array.from({ length: 9_000 }, (_, i) => `big-${i}`)
    const adds = env.redis.pipeline()
    for (const [i, user] of users.entries())
      adds.xadd(keys.stream, '*', 'u', user, 'p', String(i + 1), 't', '10')
    const ids = ((await adds.exec()) ?? []).map(([, id]) => String(id))
    await env.redis.xreadgroup('GROUP', 'writers', 'w1', 'COUNT', 9_000, 'STREAMS', keys.stream, '>')
    const pairs = users.flatMap((user, i) => [user, `I|${i + 1}|10|${i + 1}|20`])
    const args = ['writers', ids.length, `${env.redisPrefix}big-decisions`, 9, ...ids, ...pairs]
    const keyList = [keys.users, keys.queue, keys.state, keys.stream]
    assert.deepEqual(await couponScripts.settleIssued.run(env.redis, keyList, args), {
      changed: 9_000,
      acknowledged: 9_000,
      trimmed: 9_000,
    })
    assert.equal(await env.redis.hget(keys.users, 'big-8999'), 'I|9000|10|9000|20')
    assert.equal(await env.redis.xlen(keys.stream), 0)
  })

  it('resolveSoldOut returns the resolved users with their sold-out records', async () => {
    const keys = couponKeys(env.redisPrefix, 5)
    await env.redis.zadd(keys.queue, 1, 'ann', 2, 'bob')
    await env.redis.hset(keys.users, 'ann', 'P|1|111||', 'bob', 'I|2|10|9|20')
    const pairs = await couponScripts.resolveSoldOut.run(
      env.redis,
      [keys.queue, keys.users, keys.state],
      [10, 2],
    )
    assert.equal(pairs.length, 2, 'only the pending user')
    assert.equal(pairs[0], 'ann')
    const record = decodeRecord(pairs[1]!)
    assert.equal(record.status, 'SOLD_OUT')
    assert.equal(record.position, 1)
    assert.equal(record.requestedAtMs, 111)
    assert.equal(typeof record.decidedAtMs, 'number')
    assert.equal(await env.redis.zcard(keys.queue), 0)
  })
})
