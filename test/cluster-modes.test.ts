/**
 * Every issuance mode on a real Redis Cluster (3 masters + 3 replicas of the test's own, see
 * bench/lib/redis-cluster.ts): the cross-mode sale of test/invariants.test.ts over HTTP, kafka included,
 * with each coupon's keys on one slot and different coupons on different masters.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Cluster } from 'ioredis'
import { type OwnCluster, startOwnCluster } from '../bench/lib/redis-cluster.ts'
import { channels, couponKeys } from '../src/redis/keys.ts'
import { scriptFileNames, scriptShas } from '../src/redis/scripts.ts'
import { runConcurrently, type TestApp } from './support/app.ts'
import { startClusterApp } from './support/cluster-app.ts'
import { deleteKeys, eventually } from './support/infra.ts'
import { assertSaleInvariants } from './support/invariants.ts'

describe('every mode on a Redis Cluster', () => {
  let cluster: OwnCluster
  let t: TestApp

  before(async () => {
    cluster = await startOwnCluster()
    // A long issuance window: the limits test below floods one user and must not see the window roll over.
    t = await startClusterApp('clustermodes', cluster, { RATE_LIMIT_WINDOW_MS: '600000' })
  })

  after(async () => {
    try {
      await t?.close()
    } finally {
      await cluster?.destroy()
    }
  })

  for (const issueMode of ['sync', 'queue', 'stream', 'kafka'] as const) {
    it(`${issueMode}: issues exactly the quantity, once per user, to the first requesters, and decides every request`, async () => {
      // sync takes a lock and a transaction per request: fewer users, the same invariants.
      await assertSaleInvariants(t, issueMode, issueMode === 'sync' ? { users: 400 } : {})
    })
  }

  it('keeps each coupon’s keys on one slot and spreads coupons over the masters', async () => {
    const masters = new Set<number>()
    for (let id = 1; id <= 12; id++) {
      const keys = Object.values(couponKeys(t.env.redisPrefix, id))
      const slots = new Set(await Promise.all(keys.map((key) => cluster.slotOfKey(key))))
      assert.equal(slots.size, 1, `coupon ${id}'s keys share one slot`)
      masters.add(await cluster.masterOfKey(keys[0]!))
    }
    assert.equal(masters.size, 3, 'twelve coupons use all three masters')
  })

  it('rebuilds a coupon whose keys the cluster lost, from Postgres, on the coupon’s own slot', async () => {
    const coupon = await t.createCoupon({ quantity: 2, issueMode: 'stream' })
    for (const user of ['rb-a', 'rb-b']) {
      const answer = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor(user) })
      assert.equal(answer.status, 202)
    }
    const { state } = couponKeys(t.env.redisPrefix, coupon.id)
    await eventually(async () => (await t.app.redis.hget(state, 'issued')) === '2', 'both rows written')
    assert.ok((await deleteKeys(t.env.redis, `${t.env.redisPrefix}{c:${coupon.id}}:*`)) > 0)
    const status = await t.http('GET', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('rb-a') })
    assert.equal(status.body.status, 'ISSUED')
    const late = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('rb-c') })
    assert.equal(late.status, 410)
    const again = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('rb-b') })
    assert.equal(again.status, 409)
  })

  it('pushes a decision over SSE through cluster pub/sub', async () => {
    const coupon = await t.createCoupon({ quantity: 1, issueMode: 'stream' })
    const controller = new AbortController()
    const response = await fetch(`${t.baseUrl}/me/events?access_token=${t.tokenFor('sse-u')}`, {
      headers: { accept: 'text/event-stream' },
      signal: controller.signal,
    })
    assert.equal(response.status, 200)
    let text = ''
    const reading = (async () => {
      const decoder = new TextDecoder()
      for await (const chunk of response.body!) text += decoder.decode(chunk as Uint8Array, { stream: true })
    })().catch(() => {})
    try {
      await eventually(async () => text.includes('event: ready'), 'the event stream is open')
      const answer = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('sse-u') })
      assert.equal(answer.status, 202)
      await eventually(
        async () => text.includes(`"couponId":${coupon.id}`) && text.includes('"status":"ISSUED"'),
        'the ISSUED decision is pushed',
      )
    } finally {
      controller.abort()
      await reading
    }
  })

  it('hears a notice published on any master (classic pub/sub is cluster-wide)', async () => {
    const redis = t.app.redis as Cluster
    const { couponChanged } = channels(t.env.redisPrefix)
    const heard: string[] = []
    const listen = (channel: string, message: string) => {
      if (channel === couponChanged) heard.push(message)
    }
    t.app.redisSubscriber.on('message', listen)
    try {
      const masters = redis.nodes('master')
      assert.equal(masters.length, 3)
      for (const [i, node] of masters.entries()) await node.publish(couponChanged, String(900_000 + i))
      await eventually(async () => heard.length === 3, 'a notice from each master')
      assert.deepEqual(heard.sort(), ['900000', '900001', '900002'])
    } finally {
      t.app.redisSubscriber.off('message', listen)
    }
  })

  it('counts the limits in the cluster, and refuses a key over its limit from memory', async () => {
    const coupon = await t.createCoupon({ quantity: 5, issueMode: 'stream' })
    // startTestApp allows 1,000 issuance requests per user per window (10 minutes here).
    const answers = await runConcurrently(1_100, 4, () =>
      t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('limit-flood') }),
    )
    assert.equal(answers.filter((answer) => answer.status === 429).length, 100)
    const counted = Number(await t.app.redis.get(`${t.env.redisPrefix}limit:issuance:limit-flood`))
    assert.ok(counted > 1_000 && counted <= 1_004, `Redis counted ${counted}: the rest refused from memory`)
  })

  it('has every script loaded on every master, and no master ever answered CROSSSLOT', async () => {
    const redis = t.app.redis as Cluster
    const names = scriptFileNames()
    for (const node of redis.nodes('master')) {
      const errors = await node.info('errorstats')
      assert.doesNotMatch(errors, /CROSSSLOT/, `${node.options.port}: ${errors}`)
      // Every script of this process ran or was preloaded there: SCRIPT EXISTS of each SHA.
      const loaded = await node.call('SCRIPT', 'EXISTS', ...scriptShas())
      assert.deepEqual(
        loaded,
        names.map(() => 1),
        `${node.options.port} has every script`,
      )
    }
  })
})
