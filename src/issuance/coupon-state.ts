import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Coupon } from '../domain/coupon.ts'
import { unavailable } from '../domain/errors.ts'
import { couponKeys } from '../redis/keys.ts'
import { runScript } from '../redis/scripts.ts'
import { inTransaction } from '../storage/postgres.ts'
import { holderRows } from '../storage/user-coupons.ts'
import type { IssuanceContext } from './context.ts'
import { decodeRecord, encodeRecord, type IssuanceRecord } from './records.ts'

/** Consumer groups on a coupon's stream: Postgres writers (stream mode) or the Kafka relay (kafka mode). */
export const STREAM_GROUPS = { stream: 'writers', kafka: 'relay' } as const

const REBUILD_LEASE_MS = 30_000
const CHUNK = 500

export async function isLoaded(ctx: IssuanceContext, couponId: number): Promise<boolean> {
  return (await ctx.redis.hexists(couponKeys(ctx.redisPrefix, couponId).state, 'stock')) === 1
}

/** Loads the coupon's state unless some process already did. */
export async function ensureLoaded(ctx: IssuanceContext, coupon: Coupon): Promise<void> {
  if (!(await isLoaded(ctx, coupon.id))) await rebuildCouponState(ctx, coupon)
}

/**
 * (Re)creates a coupon's Redis state from Postgres, the source of truth for issued rows, plus the entries its
 * stream still holds (accepted, not yet written). Used for a new coupon and whenever Redis lost the state.
 * One process rebuilds at a time (a lease); the others wait for it. Admissions meanwhile answer
 * "not loaded" and retry, so nobody is admitted against a half-built state.
 */
export async function rebuildCouponState(ctx: IssuanceContext, coupon: Coupon): Promise<void> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  const token = randomUUID()
  if ((await ctx.redis.set(keys.rebuildLease, token, 'PX', REBUILD_LEASE_MS, 'NX')) !== 'OK') {
    return waitUntilLoaded(ctx, coupon.id)
  }
  try {
    if (await isLoaded(ctx, coupon.id)) return
    const streamMode = coupon.issueMode === 'stream' || coupon.issueMode === 'kafka'
    // The stream is read before Postgres: an entry is deleted only after its row committed, so an entry
    // missing here has a row the read below sees (read the other way round, a batch committed and deleted
    // in between would be in neither, and its units would be given again).
    const pending = streamMode ? await ctx.redis.xrange(keys.stream, '-', '+') : []
    // FOR SHARE waits for any writer transaction of this coupon in flight, so its rows are counted.
    const rows = await inTransaction(ctx.db, async (client) => {
      await client.query('SELECT 1 FROM coupons WHERE id = $1 FOR SHARE', [coupon.id])
      return holderRows(client, coupon.id)
    })
    const records = new Map<string, IssuanceRecord>()
    let seq = 0
    for (const row of rows) {
      const position = row.position ?? 0
      seq = Math.max(seq, position)
      records.set(row.user_id, {
        status: 'ISSUED',
        position,
        requestedAtMs: row.requested_at.getTime(),
        userCouponId: row.id,
        decidedAtMs: row.issued_at.getTime(),
      })
    }
    let promised = rows.length
    if (streamMode) {
      // Accepted requests whose rows are not written yet still hold a unit of stock each.
      for (const [, fields] of pending) {
        const entry = streamFields(fields)
        seq = Math.max(seq, entry.position)
        if (records.has(entry.userId)) continue
        records.set(entry.userId, {
          status: 'ACCEPTED',
          position: entry.position,
          requestedAtMs: entry.requestedAtMs,
        })
        promised += 1
      }
      await ensureGroup(ctx, keys.stream, STREAM_GROUPS[coupon.issueMode as 'stream' | 'kafka'])
    } else if (coupon.issueMode === 'queue') {
      // Waiting users survive if only the state or users hash was lost: keep them pending.
      const waiting = await ctx.redis.zrange(keys.queue, 0, -1, 'WITHSCORES')
      for (let i = 0; i < waiting.length; i += 2) {
        const position = Number(waiting[i + 1])
        seq = Math.max(seq, position)
        if (!records.has(waiting[i]!))
          records.set(waiting[i]!, { status: 'PENDING', position, requestedAtMs: 0 })
      }
    }
    const pairs = [...records].flatMap(([user, record]) => [user, encodeRecord(record)])
    for (let i = 0; i < pairs.length; i += CHUNK * 2) {
      await runScript(
        ctx.redis,
        'rebuildCoupon',
        [keys.state, keys.users],
        ['', 0, 0, ...pairs.slice(i, i + CHUNK * 2)],
      )
    }
    const stock = coupon.quantity - promised
    await runScript(
      ctx.redis,
      'rebuildCoupon',
      [keys.state, keys.users],
      [Math.max(stock, 0), seq, rows.length],
    )
    ctx.logger.info(
      { couponId: coupon.id, issued: rows.length, promised, stock },
      'coupon state loaded into Redis',
    )
  } finally {
    await runScript(ctx.redis, 'releaseLease', [keys.rebuildLease], [token])
  }
}

async function waitUntilLoaded(ctx: IssuanceContext, couponId: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await isLoaded(ctx, couponId)) return
    await sleep(50)
  }
  throw unavailable('coupon state')
}

export async function ensureGroup(ctx: IssuanceContext, stream: string, group: string): Promise<void> {
  try {
    await ctx.redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM')
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error
  }
}

export interface StreamEntry {
  id: string
  userId: string
  position: number
  requestedAtMs: number
}

/** Reads the flat field list `[u, userId, p, position, t, ms]` that admitStream writes. */
export function streamFields(fields: string[]): Omit<StreamEntry, 'id'> {
  // The layout admitStream writes, read without building a map (the writers read thousands per batch).
  if (fields.length === 6 && fields[0] === 'u' && fields[2] === 'p' && fields[4] === 't')
    return { userId: fields[1]!, position: Number(fields[3]), requestedAtMs: Number(fields[5]) }
  const map = new Map<string, string>()
  for (let i = 0; i < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!)
  return { userId: map.get('u') ?? '', position: Number(map.get('p')), requestedAtMs: Number(map.get('t')) }
}

export async function readRecord(ctx: IssuanceContext, couponId: number, userId: string) {
  const raw = await ctx.redis.hget(couponKeys(ctx.redisPrefix, couponId).users, userId)
  return raw === null ? undefined : decodeRecord(raw)
}

/** The state hash's counters as numbers (missing fields read as 0). */
export async function readState(ctx: IssuanceContext, couponId: number) {
  const raw = await ctx.redis.hgetall(couponKeys(ctx.redisPrefix, couponId).state)
  const field = (name: string) => Number(raw[name] ?? 0)
  return {
    loaded: raw.stock !== undefined,
    stock: field('stock'),
    seq: field('seq'),
    soldOut: field('soldOut'),
    issued: field('issued'),
  }
}

/** The stock Redis still has to give, from the state hash (loading it if Redis lost it). */
export async function stockOf(ctx: IssuanceContext, coupon: Coupon): Promise<number> {
  const stock = await ctx.redis.hget(couponKeys(ctx.redisPrefix, coupon.id).state, 'stock')
  if (stock !== null) return Number(stock)
  await rebuildCouponState(ctx, coupon)
  return stockOf(ctx, coupon)
}

/**
 * The users holding a request for the coupon (the users hash's fields), read in HSCAN pages so a large hash
 * never blocks Redis; undefined when there are more than `limit` of them.
 */
export async function requestHolders(
  ctx: IssuanceContext,
  couponId: number,
  limit: number,
): Promise<Set<string> | undefined> {
  const users = couponKeys(ctx.redisPrefix, couponId).users
  const holders = new Set<string>()
  let cursor = '0'
  do {
    const [next, fieldsAndValues] = await ctx.redis.hscan(users, cursor, 'COUNT', 1_000)
    for (let i = 0; i < fieldsAndValues.length; i += 2) holders.add(fieldsAndValues[i]!)
    if (holders.size > limit) return undefined
    cursor = next
  } while (cursor !== '0')
  return holders
}

/** Adds refusals answered outside Redis to the coupon's `soldOut` counter; false if Redis lost the state. */
export async function addSoldOut(ctx: IssuanceContext, couponId: number, refusals: number): Promise<boolean> {
  const [result] = (await runScript(
    ctx.redis,
    'addSoldOut',
    [couponKeys(ctx.redisPrefix, couponId).state],
    [refusals],
  )) as [number]
  return result >= 0
}
