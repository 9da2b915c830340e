import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { type Arrival, generateArrivals, simulate, splitStock } from '../scripts/bucket-sim.ts'

/** Users u1..un one millisecond apart, u1 at 0 ms, homed on the given buckets. */
function lineUp(homes: number[]): Arrival[] {
  return homes.map((bucket, i) => ({ user: `u${i + 1}`, atMs: i, bucket }))
}

describe('bucket simulation (one coupon split over K shards)', () => {
  test('splits the stock evenly, the remainder to the first buckets', () => {
    assert.deepEqual(splitStock(10, 4), [3, 3, 2, 2])
    assert.deepEqual(splitStock(8, 2), [4, 4])
  })

  test('without stealing, a user at a dry bucket loses to a later user at another bucket', () => {
    // Two units per bucket; three early users all homed on bucket 0.
    const result = simulate(lineUp([0, 0, 0, 1, 1, 1]), { quantity: 4, buckets: 2, steal: false, hopMs: 0.5 })
    assert.deepEqual(result.issued, ['u1', 'u2', 'u4', 'u5'])
    assert.equal(result.lateWinners, 1, 'u5 is not among the first four')
    assert.equal(result.earlyLosers, 1, 'u3 is among the first four and was refused')
    assert.equal(result.unissued, 0)
    assert.equal(result.hops, 0)
  })

  test('stealing faster than the next arrival restores first-come-first-served', () => {
    const result = simulate(lineUp([0, 0, 0, 1, 1, 1]), { quantity: 4, buckets: 2, steal: true, hopMs: 0.5 })
    // u3 hops to bucket 1 at 2.5 ms, before u4 arrives at 3 ms; u5 and u6 find both buckets dry.
    assert.deepEqual(result.issued, ['u1', 'u2', 'u3', 'u4'])
    assert.equal(result.lateWinners, 0)
    assert.equal(result.earlyLosers, 0)
    assert.equal(result.hops, 1, 'u6 is refused without a call: both buckets are known dry by then')
  })

  test('a steal slower than later arrivals still loses the unit it went for', () => {
    const result = simulate(lineUp([0, 0, 0, 1, 1, 1]), { quantity: 4, buckets: 2, steal: true, hopMs: 2.5 })
    // u3 reaches bucket 1 at 4.5 ms, after u4 (3 ms) and u5 (4 ms) took its two units.
    assert.deepEqual(result.issued, ['u1', 'u2', 'u4', 'u5'])
    assert.equal(result.lateWinners, 1)
    assert.equal(result.earlyLosers, 1)
    assert.equal(result.hops, 1)
  })

  test('stock nobody reaches stays unissued without stealing, and is found by stealing', () => {
    const arrivals = lineUp([0, 0, 0, 0])
    const plain = simulate(arrivals, { quantity: 4, buckets: 2, steal: false, hopMs: 0.5 })
    assert.deepEqual(plain.issued, ['u1', 'u2'])
    assert.equal(plain.unissued, 2)
    assert.equal(plain.earlyLosers, 2)
    const stealing = simulate(arrivals, { quantity: 4, buckets: 2, steal: true, hopMs: 0.5 })
    assert.deepEqual(stealing.issued, ['u1', 'u2', 'u3', 'u4'])
    assert.equal(stealing.unissued, 0)
  })

  test('with one bucket the issued users are exactly the first arrivals', () => {
    const arrivals = generateArrivals({ count: 3_000, buckets: 1, perMs: 20, seed: 7 })
    const result = simulate(arrivals, { quantity: 1_000, buckets: 1, steal: false, hopMs: 1 })
    assert.deepEqual(
      result.issued,
      arrivals.slice(0, 1_000).map((a) => a.user),
    )
    assert.equal(result.lateWinners, 0)
  })

  test('a seeded run is reproducible and its counts agree with the issued list', () => {
    const options = { quantity: 2_000, buckets: 4, steal: false, hopMs: 1 }
    const arrivals = generateArrivals({ count: 6_000, buckets: 4, perMs: 20, seed: 42 })
    assert.deepEqual(generateArrivals({ count: 6_000, buckets: 4, perMs: 20, seed: 42 }), arrivals)
    assert.equal(new Set(arrivals.map((a) => a.user)).size, arrivals.length, 'distinct users')
    for (let i = 1; i < arrivals.length; i++) assert.ok(arrivals[i]!.atMs >= arrivals[i - 1]!.atMs)

    const result = simulate(arrivals, options)
    assert.deepEqual(simulate(arrivals, options), result)
    assert.equal(new Set(result.issued).size, result.issued.length, 'nobody issued twice')
    assert.equal(result.issued.length + result.unissued, options.quantity)
    const rank = new Map(arrivals.map((a, i) => [a.user, i]))
    const late = result.issued.filter((user) => (rank.get(user) ?? 0) >= options.quantity).length
    assert.equal(result.lateWinners, late)
    assert.ok(result.lateWinners > 0, 'four buckets displace some early users')
    // Each bucket alone is first-come-first-served: its winners are its earliest arrivals.
    for (let bucket = 0; bucket < 4; bucket++) {
      const mine = arrivals.filter((a) => a.bucket === bucket).map((a) => a.user)
      const won = result.issued.filter((user) => mine.includes(user))
      assert.deepEqual(won, mine.slice(0, won.length))
    }
  })
})
