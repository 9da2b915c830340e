/**
 * One coupon larger than one Redis shard: its stock split into K buckets, each on its own slot (its own
 * hash tag, so on different masters), each user routed to one bucket by a hash of the user id. Each bucket
 * is first-come-first-served on its own; globally a user can lose at a dry bucket while a later user wins at
 * another bucket that still has stock. This simulates arrivals and counts that error: how many of the users
 * issued are not among the first `quantity` arrivals, with and without a work-stealing step: a user who
 * finds their bucket dry tries the next bucket in a ring, paying one more round trip per hop. A dry answer
 * also tells the routers (the answer itself, then pub/sub to the other API processes): `hopMs` after a bucket
 * first answered dry, requests skip it, and once every bucket is known dry they are refused without a call.
 *
 * Run: node scripts/bucket-sim.ts [arrivals]   (default 50000; prints the tables in docs/scaling.md)
 */

export interface Arrival {
  user: string
  /** When the request reaches its home bucket. */
  atMs: number
  /** Home bucket: hash(user) mod K. */
  bucket: number
}

export interface BucketOptions {
  quantity: number
  buckets: number
  /** On a dry bucket, try the next one in the ring not known dry (each hop costs `hopMs`). */
  steal: boolean
  /** One more round trip to another shard; also how long a dry answer takes to reach the routers. */
  hopMs: number
}

export interface BucketResult {
  /** Users issued, in the order they were issued. */
  issued: string[]
  /** Issued users that are not among the first `quantity` arrivals (each one displaced an earlier user). */
  lateWinners: number
  /** Users among the first `quantity` arrivals that were refused. */
  earlyLosers: number
  /** Stock left in some bucket when the arrivals ended. */
  unissued: number
  /** Extra round trips to other buckets (stealing). */
  hops: number
}

/** Stock per bucket: quantity split as evenly as possible, the remainder to the first buckets. */
export function splitStock(quantity: number, buckets: number): number[] {
  return Array.from(
    { length: buckets },
    (_, b) => Math.floor(quantity / buckets) + (b < quantity % buckets ? 1 : 0),
  )
}

interface Visit {
  arrival: number
  atMs: number
  bucket: number
  /** Bitmask of the buckets this request already found dry. */
  tried: number
}

/** Replays arrivals (sorted by `atMs`) against K buckets, each serving its requests in the order they reach it. */
export function simulate(arrivals: readonly Arrival[], options: BucketOptions): BucketResult {
  if (options.buckets > 30) throw new Error('at most 30 buckets (a bitmask tracks the buckets tried)')
  const stock = splitStock(options.quantity, options.buckets)
  const knownDryAt = stock.map(() => Number.POSITIVE_INFINITY)
  const issued: string[] = []
  // The next bucket in the ring after `from` that this request has not tried and no router knows is dry.
  const nextBucket = (from: number, tried: number, atMs: number): number | undefined => {
    for (let step = 0; step < options.buckets; step++) {
      const bucket = (from + step) % options.buckets
      if ((tried & (1 << bucket)) === 0 && (knownDryAt[bucket] ?? 0) > atMs) return bucket
    }
    return undefined
  }
  // Two queues sorted by time: first visits (the arrivals) and hops. Hops are scheduled at processing
  // time + hopMs and processing time never goes back, so a FIFO keeps them sorted.
  const hops: Visit[] = []
  let nextHop = 0
  let nextArrival = 0
  while (nextArrival < arrivals.length || nextHop < hops.length) {
    const arrival = arrivals[nextArrival]
    const hop = hops[nextHop]
    let visit: Visit
    if (arrival !== undefined && (hop === undefined || arrival.atMs <= hop.atMs)) {
      nextArrival++
      // A router that knows the home bucket is dry sends the request straight to one with stock.
      const bucket = options.steal ? nextBucket(arrival.bucket, 0, arrival.atMs) : arrival.bucket
      if (bucket === undefined) continue
      visit = { arrival: nextArrival - 1, atMs: arrival.atMs, bucket, tried: 0 }
    } else if (hop !== undefined) {
      visit = hop
      nextHop++
    } else {
      break
    }
    const left = stock[visit.bucket] ?? 0
    if (left > 0) {
      stock[visit.bucket] = left - 1
      issued.push(arrivals[visit.arrival]?.user ?? '')
      continue
    }
    knownDryAt[visit.bucket] = Math.min(knownDryAt[visit.bucket] ?? 0, visit.atMs + options.hopMs)
    if (!options.steal) continue
    const tried = visit.tried | (1 << visit.bucket)
    const bucket = nextBucket(visit.bucket, tried, visit.atMs)
    if (bucket !== undefined)
      hops.push({ arrival: visit.arrival, atMs: visit.atMs + options.hopMs, bucket, tried })
  }
  const first = new Set(arrivals.slice(0, options.quantity).map((a) => a.user))
  const lateWinners = issued.filter((user) => !first.has(user)).length
  return {
    issued,
    lateWinners,
    earlyLosers: first.size - (issued.length - lateWinners),
    unissued: stock.reduce((sum, n) => sum + n, 0),
    hops: hops.length,
  }
}

export interface ArrivalOptions {
  count: number
  buckets: number
  /** Mean arrival rate (Poisson process). */
  perMs: number
  seed: number
}

/** Distinct random user ids arriving as a Poisson process, each routed to hash(user) mod K. */
export function generateArrivals(options: ArrivalOptions): Arrival[] {
  const random = mulberry32(options.seed)
  const arrivals: Arrival[] = []
  const seen = new Set<string>()
  let atMs = 0
  while (arrivals.length < options.count) {
    const user = `u${Math.floor(random() * 1e12)}`
    if (seen.has(user)) continue
    seen.add(user)
    atMs += -Math.log(1 - random()) / options.perMs
    arrivals.push({ user, atMs, bucket: hash32(user) % options.buckets })
  }
  return arrivals
}

/** FNV-1a with a murmur3 finaliser: the routing hash (any stable hash of the user id would do). */
export function hash32(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function main(count: number): void {
  const quantity = 10_000
  const perMs = 20
  const hopMs = 1
  const seeds = 20
  console.log(
    `quantity ${quantity}, ${count} distinct users arriving at ${perMs}/ms (Poisson), steal hop ${hopMs} ms, ${seeds} seeds per row`,
  )
  console.log('')
  console.log(
    '| K | stealing | late winners: mean (max) | % of quantity | unissued: mean (max) | hops: mean |',
  )
  console.log('|---|---|---|---|---|---|')
  for (const buckets of [1, 2, 4, 8]) {
    for (const steal of [false, true]) {
      const results = Array.from({ length: seeds }, (_, seed) =>
        simulate(generateArrivals({ count, buckets, perMs, seed: seed + 1 }), {
          quantity,
          buckets,
          steal,
          hopMs,
        }),
      )
      const mean = (pick: (r: BucketResult) => number) => results.reduce((s, r) => s + pick(r), 0) / seeds
      const max = (pick: (r: BucketResult) => number) => Math.max(...results.map(pick))
      const late = mean((r) => r.lateWinners)
      console.log(
        `| ${buckets} | ${steal ? 'yes' : 'no'} | ${late.toFixed(1)} (${max((r) => r.lateWinners)}) | ` +
          `${((100 * late) / quantity).toFixed(2)} % | ${mean((r) => r.unissued).toFixed(1)} (${max((r) => r.unissued)}) | ` +
          `${mean((r) => r.hops).toFixed(0)} |`,
      )
    }
  }
}

if (import.meta.main) main(Number(process.argv[2] ?? 50_000))
