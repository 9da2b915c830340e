import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { AppError } from '../src/domain/errors.ts'
import { FairLock, type FairLockOptions, LockReleaseNotifier } from '../src/issuance/sync/fair-lock.ts'
import { connectRedis, createRedis } from '../src/redis/client.ts'
import { couponKeys } from '../src/redis/keys.ts'
import { createTestEnv, eventually, TEST_REDIS_URL, type TestEnv } from './support/infra.ts'

const CHILD = new URL('./fixtures/sync-lock-child.ts', import.meta.url).pathname

describe('fair lock', () => {
  let env: TestEnv
  const closers: (() => Promise<void>)[] = []
  let nextCoupon = 1

  /** A lock as one process would have it: its own Redis connection and notice subscriber. */
  async function processLock(options: Partial<FairLockOptions> = {}): Promise<FairLock> {
    const redis = createRedis({ url: TEST_REDIS_URL, clusterNodes: [] })
    await connectRedis(redis)
    const ctx = { redis, redisPrefix: env.redisPrefix, logger: env.logger }
    const notifier = new LockReleaseNotifier(ctx)
    closers.push(async () => {
      await notifier.close()
      redis.disconnect()
    })
    return new FairLock(ctx, notifier, { leaseMs: 10_000, maxWaitMs: 60_000, ...options })
  }

  before(async () => {
    env = await createTestEnv('fairlock')
  })

  after(async () => {
    for (const close of closers) await close()
    await env.close()
  })

  test('waiters from several processes get the lock strictly in arrival order', async () => {
    const couponId = nextCoupon++
    const locks = await Promise.all([processLock(), processLock(), processLock()])
    const granted: number[] = []
    await Promise.all(
      Array.from({ length: 90 }, async (_, i) => {
        const grant = await locks[i % locks.length]!.acquire(couponId)
        granted.push(grant.arrival)
        await sleep(Math.random() * 3)
        assert.equal(await locks[i % locks.length]!.release(grant), true)
      }),
    )
    assert.deepEqual(
      granted,
      Array.from({ length: 90 }, (_, i) => i + 1),
    )
  })

  test('holders never overlap, even with awaits inside the critical section', async () => {
    const couponId = nextCoupon++
    const locks = await Promise.all([processLock(), processLock()])
    let inside = 0
    let mostInside = 0
    let counter = 0
    await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        locks[i % 2]!.withLock(couponId, async () => {
          inside++
          mostInside = Math.max(mostInside, inside)
          const seen = counter
          await sleep(Math.random() * 2)
          counter = seen + 1
          inside--
        }),
      ),
    )
    assert.equal(mostInside, 1)
    assert.equal(counter, 60)
  })

  test('a holder killed with SIGKILL blocks the coupon only until its lease runs out', async (t) => {
    const couponId = nextCoupon++
    const keys = couponKeys(env.redisPrefix, couponId)
    const leaseMs = 1_500
    const child = startChild(couponId, leaseMs, 3_000)
    t.after(() => stopChild(child))
    const childArrival = await heldBy(child)

    const pttl = await env.redis.pttl(keys.lock)
    assert.ok(pttl > 0 && pttl <= leaseMs, `lock PTTL ${pttl} should be within the lease of ${leaseMs} ms`)

    const lock = await processLock()
    const waiting = lock.acquire(couponId)
    await eventually(async () => (await env.redis.zcard(keys.lockWaiters)) === 1, 'the parent waits in line')
    await stopChild(child)

    const grant = await waiting
    assert.ok(grant.arrival > childArrival)
    assert.equal(await env.redis.get(keys.lock), grant.token)
    assert.equal(await lock.release(grant), true)
  })

  test('a waiter killed while waiting does not block the waiters behind it', async (t) => {
    const couponId = nextCoupon++
    const keys = couponKeys(env.redisPrefix, couponId)
    const lock = await processLock()
    const first = await lock.acquire(couponId)

    const child = startChild(couponId, 10_000, 400)
    t.after(() => stopChild(child))
    await eventually(async () => (await env.redis.zcard(keys.lockWaiters)) === 1, 'the child waits in line')
    const [childToken, childArrival] = await env.redis.zrange(keys.lockWaiters, 0, 0, 'WITHSCORES')
    await stopChild(child)

    const later = lock.acquire(couponId)
    await lock.release(first)
    const grant = await later
    assert.ok(grant.arrival > Number(childArrival), 'the dead waiter was ahead in line')
    assert.equal(await env.redis.zscore(keys.lockWaiters, childToken!), null)
    assert.equal(await env.redis.get(keys.lock), grant.token)
    await lock.release(grant)
  })

  test('a waiter that gives up gets 503 UNAVAILABLE and leaves the line', async () => {
    const couponId = nextCoupon++
    const keys = couponKeys(env.redisPrefix, couponId)
    const lock = await processLock()
    const impatient = await processLock({ maxWaitMs: 200 })
    const holder = await lock.acquire(couponId)

    await assert.rejects(impatient.acquire(couponId), (error: unknown) => {
      assert.ok(error instanceof AppError)
      assert.equal(error.code, 'UNAVAILABLE')
      assert.equal(error.status, 503)
      assert.equal(error.retryAfterSeconds, 1)
      return true
    })
    assert.equal(await env.redis.zcard(keys.lockWaiters), 0)

    await lock.release(holder)
    const next = await lock.acquire(couponId)
    assert.equal(await env.redis.get(keys.lock), next.token)
    await lock.release(next)
  })

  test('a holder whose lease ran out cannot release the next holder', async () => {
    const couponId = nextCoupon++
    const keys = couponKeys(env.redisPrefix, couponId)
    const shortLease = await processLock({ leaseMs: 100 })
    const lock = await processLock()
    const stale = await shortLease.acquire(couponId)
    await eventually(async () => (await env.redis.exists(keys.lock)) === 0, 'the lease runs out')

    const current = await lock.acquire(couponId)
    assert.equal(await shortLease.release(stale), false)
    assert.equal(await env.redis.get(keys.lock), current.token)
    assert.equal(await lock.release(current), true)
  })

  function startChild(couponId: number, leaseMs: number, waiterTtlMs: number): ChildProcess {
    return spawn(
      process.execPath,
      [CHILD, TEST_REDIS_URL, env.redisPrefix, String(couponId), String(leaseMs), String(waiterTtlMs)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
  }
})

/** Resolves with the child's arrival number once it prints "held". */
function heldBy(child: ChildProcess): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let out = ''
    const liveness = setTimeout(() => reject(new Error(`child never held the lock: ${out}`)), 20_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /held (\d+)/.exec(out)
      if (match) {
        clearTimeout(liveness)
        resolve(Number(match[1]))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(liveness)
      reject(new Error(`child exited (${code}) before holding the lock: ${out}`))
    })
  })
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}
