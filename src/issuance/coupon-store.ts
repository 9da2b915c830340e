import { setTimeout as sleep } from 'node:timers/promises'
import type { Coupon, Issuance, IssuanceStatus } from '../domain/coupon.ts'
import { ReplicaAckError, unavailable } from '../domain/errors.ts'
import { execOnSlot } from '../redis/client.ts'
import { channels, couponKeys } from '../redis/keys.ts'
import { takeLease } from '../redis/leases.ts'
import {
  defineScript,
  replyCode,
  replyInteger,
  replyString,
  replyStrings,
  type Script,
} from '../redis/scripts.ts'
import { inTransaction } from '../storage/postgres.ts'
import { holderRows } from '../storage/user-coupons.ts'
import { type IssuanceContext, publishDecisions } from './context.ts'

/*
 * The owner of a coupon's Redis state: the state hash (stock, seq, counters; "loaded" means it has a stock)
 * and the users hash (userId -> issuance record). Nothing else reads or writes either; the modes call the
 * functions below, which run the Lua scripts of src/redis/scripts/ through one typed wrapper each.
 */

// ---------------------------------------------------------------------------------------------------------
// The record codec: `S|position|requestedAtMs|userCouponId|decidedAtMs`, S one of P (pending), A (accepted),
// I (issued), X (sold out). The Lua side is src/redis/scripts/includes/record.lua; a record only ever moves
// forward (P/A -> I or X).

const STATUS_BY_LETTER: Record<string, IssuanceStatus> = {
  P: 'PENDING',
  A: 'ACCEPTED',
  I: 'ISSUED',
  X: 'SOLD_OUT',
}
const LETTER_BY_STATUS: Record<IssuanceStatus, string> = {
  PENDING: 'P',
  ACCEPTED: 'A',
  ISSUED: 'I',
  SOLD_OUT: 'X',
}

export interface IssuanceRecord {
  status: IssuanceStatus
  position: number
  requestedAtMs: number
  userCouponId?: number
  decidedAtMs?: number
}

export function encodeRecord(record: IssuanceRecord): string {
  return [
    LETTER_BY_STATUS[record.status],
    record.position,
    record.requestedAtMs,
    record.userCouponId ?? '',
    record.decidedAtMs ?? '',
  ].join('|')
}

export function decodeRecord(raw: string): IssuanceRecord {
  const [letter = '', position = '', requestedAt = '', userCouponId = '', decidedAt = ''] = raw.split('|')
  const status = STATUS_BY_LETTER[letter]
  if (status === undefined) throw new Error(`bad issuance record "${raw}"`)
  return {
    status,
    position: Number(position),
    requestedAtMs: Number(requestedAt),
    ...(userCouponId === '' ? {} : { userCouponId: Number(userCouponId) }),
    ...(decidedAt === '' ? {} : { decidedAtMs: Number(decidedAt) }),
  }
}

export function toIssuance(couponId: number, userId: string, record: IssuanceRecord): Issuance {
  return {
    couponId,
    userId,
    status: record.status,
    position: record.position,
    ...(record.userCouponId === undefined ? {} : { userCouponId: record.userCouponId }),
    requestedAt: new Date(record.requestedAtMs).toISOString(),
    ...(record.decidedAtMs === undefined ? {} : { decidedAt: new Date(record.decidedAtMs).toISOString() }),
  }
}

// ---------------------------------------------------------------------------------------------------------
// The scripts that touch the two hashes, each with the decoder of its reply.

/** What an admission script answered. `notLoaded`: Redis lost the coupon's state (rebuild, then retry). */
export type AdmissionReply =
  | { kind: 'admitted'; position: number; requestedAtMs: number }
  | { kind: 'alreadyRequested'; record: IssuanceRecord }
  | { kind: 'soldOut' }
  | { kind: 'notLoaded' }

const SOLD_OUT_REPLY: AdmissionReply = Object.freeze({ kind: 'soldOut' })
const NOT_LOADED_REPLY: AdmissionReply = Object.freeze({ kind: 'notLoaded' })

function admissionDecoder(name: string): (reply: unknown) => AdmissionReply {
  return (reply) => {
    const code = replyCode(name, reply)
    if (typeof code === 'number') {
      return { kind: 'admitted', position: code, requestedAtMs: replyInteger(name, reply, 1) }
    }
    if (code === 'alreadyRequested') {
      return { kind: code, record: decodeRecord(replyString(name, reply, 1)) }
    }
    return code === 'soldOut' ? SOLD_OUT_REPLY : NOT_LOADED_REPLY
  }
}

/** A reply `{ count }` or `{ -1 }`: the count, or undefined when the coupon has no state in Redis. */
function countUnlessNotLoaded(name: string): (reply: unknown) => number | undefined {
  return (reply) => {
    const code = replyCode(name, reply)
    if (typeof code === 'number') return code
    if (code === 'notLoaded') return undefined
    throw new Error(`script ${name} cannot answer ${code}`)
  }
}

export const couponScripts = {
  admitStream: defineScript('admitStream', admissionDecoder('admitStream')),
  admitQueue: defineScript('admitQueue', admissionDecoder('admitQueue')),
  markDecided: defineScript('markDecided', (reply) => replyInteger('markDecided', reply, 0)),
  resolveSoldOut: defineScript('resolveSoldOut', (reply) => replyStrings('resolveSoldOut', reply)),
  lowerQueueStock: defineScript('lowerQueueStock', countUnlessNotLoaded('lowerQueueStock')),
  addSoldOut: defineScript('addSoldOut', countUnlessNotLoaded('addSoldOut')),
  countSyncRequest: defineScript('countSyncRequest', countUnlessNotLoaded('countSyncRequest')),
  mergeRecords: defineScript('mergeRecords', (reply) => replyInteger('mergeRecords', reply, 0)),
  restoreState: defineScript('restoreState', (reply) => replyInteger('restoreState', reply, 0) === 1),
}

// ---------------------------------------------------------------------------------------------------------
// Admission (the hot path: one script call, batched per event-loop turn).

type Admit = (ctx: IssuanceContext, couponId: number, userId: string) => Promise<AdmissionReply>

/**
 * An admission script on the coupon's state, users and `where` the admitted request goes. With a replica
 * ack (REDIS_REPLICA_ACK), an admission the replicas did not confirm in time throws ReplicaAckError (503):
 * it happened on the master, and may still end as a row, but a failover could lose it, so it is not told.
 */
function admission(script: Script<AdmissionReply>, where: 'stream' | 'queue'): Admit {
  return async (ctx, couponId, userId) => {
    const keys = couponKeys(ctx.redisPrefix, couponId)
    const { reply, replicas } = await script.runReplicated(
      ctx.redis,
      [keys.state, keys.users, keys[where]],
      [userId, channels(ctx.redisPrefix).wakeUp],
      ctx.replicaAck,
    )
    const wanted = ctx.replicaAck?.replicas ?? 0
    if (reply.kind === 'admitted' && replicas !== undefined && replicas < wanted) {
      throw new ReplicaAckError(replicas, wanted)
    }
    return reply
  }
}

/**
 * Admits a user to the coupon's stream (stream, kafka): reserves a unit, appends to the outbox, and wakes
 * the drainers when the stream had nothing they were told about.
 */
export const admitToStream = admission(couponScripts.admitStream, 'stream')

/** Puts a user on the coupon's waiting queue (queue mode) and wakes the scheduler; it decides later. */
export const admitToQueue = admission(couponScripts.admitQueue, 'queue')

type Pipeline = ReturnType<IssuanceContext['redis']['pipeline']>

/**
 * Runs one command on the coupon's keys (`command` adds it to a pipeline) and returns its reply; with
 * REDIS_REPLICA_ACK, only once the replicas hold the state that reply saw, else ReplicaAckError (retried by
 * the caller). Used to read admitted requests before writing them on to Postgres or Kafka: an admission a
 * failover would lose (it was answered 503) must not become a row the promoted replica knows nothing of, or
 * its unit and position would be given a second time. The command, a marker write and `WAIT` go in one
 * pipeline to one node: WAIT covers its connection's last write, the marker, which that node ran after every
 * admission the command saw. A failover in between fails the pipeline, or the command runs on the new
 * master and sees only what it has.
 */
export async function readReplicated(
  ctx: IssuanceContext,
  couponId: number,
  command: (pipeline: Pipeline) => Pipeline,
): Promise<unknown> {
  const ack = ctx.replicaAck
  const pipeline = command(ctx.redis.pipeline())
  if (ack !== undefined) {
    pipeline
      .set(couponKeys(ctx.redisPrefix, couponId).replicaProbe, '1', 'PX', 60_000)
      .call('WAIT', ack.replicas, ack.timeoutMs)
  }
  const results = await execOnSlot(ctx.redis, pipeline)
  for (const [error] of results) if (error) throw error
  if (ack !== undefined) {
    const replicas = Number(results[2]?.[1])
    if (replicas < ack.replicas) throw new ReplicaAckError(replicas, ack.replicas)
  }
  return results[0]?.[1]
}

/** An admission set the coupon's wake flag and no drainer cleared it since (a wake-up nobody heard). */
export async function wakeIsSet(ctx: IssuanceContext, couponId: number): Promise<boolean> {
  return (await ctx.redis.hget(couponKeys(ctx.redisPrefix, couponId).state, 'wake')) !== null
}

/**
 * A drainer is about to read the coupon's stream or queue: the next admission wakes the drainers again.
 * Cleared before the read, so an entry appended after this call always publishes a wake-up of its own.
 */
export async function clearWake(ctx: IssuanceContext, couponId: number): Promise<void> {
  await ctx.redis.hdel(couponKeys(ctx.redisPrefix, couponId).state, 'wake')
}

// ---------------------------------------------------------------------------------------------------------
// Loading and rebuilding.

/**
 * Requests a mode holds that are admitted but not rows yet (the stream's entries, the queue's waiting set),
 * with `reserveStock` true when each holds a unit of stock. Read before Postgres (see rebuildCouponState).
 */
export interface PendingRequests {
  records: [userId: string, record: IssuanceRecord][]
  reserveStock: boolean
}

/** How a mode supplies its pending requests to a rebuild. */
export type PendingSource = (coupon: Coupon) => Promise<PendingRequests>

/** For a mode whose requests are rows as soon as they are answered (sync). */
export const NOTHING_PENDING: PendingSource = async () => ({ records: [], reserveStock: false })

const REBUILD_LEASE_MS = 30_000
const CHUNK = 500

export async function isLoaded(ctx: IssuanceContext, couponId: number): Promise<boolean> {
  return (await ctx.redis.hexists(couponKeys(ctx.redisPrefix, couponId).state, 'stock')) === 1
}

/** Loads the coupon's state unless some process already did. */
export async function ensureLoaded(
  ctx: IssuanceContext,
  coupon: Coupon,
  pending: PendingSource,
): Promise<void> {
  if (!(await isLoaded(ctx, coupon.id))) await rebuildCouponState(ctx, coupon, pending)
}

/**
 * (Re)creates a coupon's Redis state from Postgres, the source of truth for issued rows, plus the mode's
 * pending requests. Used for a new coupon and whenever Redis lost the state. One process rebuilds at a time
 * (a lease); the others wait for it. Admissions meanwhile answer "not loaded" and retry, so nobody is
 * admitted against a half-built state: the records are merged first, the state hash comes last.
 */
export async function rebuildCouponState(
  ctx: IssuanceContext,
  coupon: Coupon,
  pending: PendingSource,
): Promise<void> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  const lease = await takeLease(ctx.redis, keys.rebuildLease, REBUILD_LEASE_MS)
  if (lease === undefined) return waitUntilLoaded(ctx, coupon.id)
  try {
    if (await isLoaded(ctx, coupon.id)) return
    // The pending requests are read before Postgres: e.g. a stream entry is deleted only after its row
    // committed, so an entry missing here has a row the read below sees (read the other way round, a batch
    // committed and deleted in between would be in neither, and its units would be given again).
    const held = await pending(coupon)
    // FOR SHARE waits for any writer transaction of this coupon in flight, so its rows are counted. The
    // quantity is read there too: the caller's copy of the coupon may be a cached one an operator changed.
    const { quantity, rows } = await inTransaction(ctx.db, async (client) => {
      const locked = await client.query<{ quantity: number }>(
        'SELECT quantity FROM coupons WHERE id = $1 FOR SHARE',
        [coupon.id],
      )
      return {
        quantity: locked.rows[0]?.quantity ?? coupon.quantity,
        rows: await holderRows(client, coupon.id),
      }
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
    for (const [userId, record] of held.records) {
      seq = Math.max(seq, record.position)
      if (records.has(userId)) continue
      records.set(userId, record)
      if (held.reserveStock) promised += 1
    }
    const pairs = [...records].flatMap(([user, record]) => [user, encodeRecord(record)])
    for (let i = 0; i < pairs.length; i += CHUNK * 2) {
      await couponScripts.mergeRecords.run(ctx.redis, [keys.users], pairs.slice(i, i + CHUNK * 2))
    }
    const stock = quantity - promised
    await couponScripts.restoreState.run(ctx.redis, [keys.state], [Math.max(stock, 0), seq, rows.length])
    ctx.logger.info(
      { couponId: coupon.id, issued: rows.length, promised, stock },
      'coupon state loaded into Redis',
    )
  } finally {
    await lease.release()
  }
}

async function waitUntilLoaded(ctx: IssuanceContext, couponId: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await isLoaded(ctx, couponId)) return
    await sleep(50)
  }
  throw unavailable('coupon state')
}

// ---------------------------------------------------------------------------------------------------------
// Reads.

export async function readRecord(
  ctx: IssuanceContext,
  couponId: number,
  userId: string,
): Promise<IssuanceRecord | undefined> {
  const raw = await ctx.redis.hget(couponKeys(ctx.redisPrefix, couponId).users, userId)
  return raw === null ? undefined : decodeRecord(raw)
}

/** The records of these users, in their order (undefined for a user without one). */
export async function readRecords(
  ctx: IssuanceContext,
  couponId: number,
  userIds: string[],
): Promise<(IssuanceRecord | undefined)[]> {
  const raw = await ctx.redis.hmget(couponKeys(ctx.redisPrefix, couponId).users, ...userIds)
  return raw.map((value) => (value === null ? undefined : decodeRecord(value)))
}

/** The user's record; if Redis lost the coupon, rebuilt first so an issued user never reads NOT_REQUESTED. */
export async function recordedIssuance(
  ctx: IssuanceContext,
  coupon: Coupon,
  userId: string,
  pending: PendingSource,
): Promise<Issuance | undefined> {
  let record = await readRecord(ctx, coupon.id, userId)
  if (record === undefined && !(await isLoaded(ctx, coupon.id))) {
    await rebuildCouponState(ctx, coupon, pending)
    record = await readRecord(ctx, coupon.id, userId)
  }
  return record && toIssuance(coupon.id, userId, record)
}

/** The state hash's counters as numbers (missing fields read as 0). */
export interface CouponCounters {
  loaded: boolean
  stock: number
  /** The last position given. */
  seq: number
  /** Requests refused as sold out at admission (and from memory). */
  soldOut: number
  /** Waiting users the queue scheduler resolved sold out. */
  resolvedSoldOut: number
  /** ISSUED records written by markDecided. */
  issued: number
  /** Requests the sync mode decided. */
  requested: number
}

export async function readCounters(ctx: IssuanceContext, couponId: number): Promise<CouponCounters> {
  const raw = await ctx.redis.hgetall(couponKeys(ctx.redisPrefix, couponId).state)
  const field = (name: string) => Number(raw[name] ?? 0)
  return {
    loaded: raw.stock !== undefined,
    stock: field('stock'),
    seq: field('seq'),
    soldOut: field('soldOut'),
    resolvedSoldOut: field('resolvedSoldOut'),
    issued: field('issued'),
    requested: field('requested'),
  }
}

/** The stock Redis still has to give, or undefined if Redis lost the coupon's state. */
export async function stockIfLoaded(ctx: IssuanceContext, couponId: number): Promise<number | undefined> {
  const stock = await ctx.redis.hget(couponKeys(ctx.redisPrefix, couponId).state, 'stock')
  return stock === null ? undefined : Number(stock)
}

/** The stock Redis still has to give (loading the state if Redis lost it). */
export async function stockOf(ctx: IssuanceContext, coupon: Coupon, pending: PendingSource): Promise<number> {
  const stock = await stockIfLoaded(ctx, coupon.id)
  if (stock !== undefined) return stock
  await rebuildCouponState(ctx, coupon, pending)
  return stockOf(ctx, coupon, pending)
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
  const holders = new Set<string>()
  let more = true
  await scanRecordsRaw(ctx, couponId, 1_000, (userId) => {
    holders.add(userId)
    if (holders.size > limit) more = false
    return more
  })
  return more ? holders : undefined
}

/** Every user's record, page by page (HSCAN): what the audit compares with Postgres. */
export function scanRecords(
  ctx: IssuanceContext,
  couponId: number,
  visit: (userId: string, record: IssuanceRecord) => void,
): Promise<void> {
  return scanRecordsRaw(ctx, couponId, 2_000, (userId, raw) => {
    visit(userId, decodeRecord(raw))
    return true
  })
}

async function scanRecordsRaw(
  ctx: IssuanceContext,
  couponId: number,
  count: number,
  visit: (userId: string, raw: string) => boolean,
): Promise<void> {
  const users = couponKeys(ctx.redisPrefix, couponId).users
  let cursor = '0'
  do {
    const [next, flat] = await ctx.redis.hscan(users, cursor, 'COUNT', count)
    for (let i = 0; i < flat.length; i += 2) if (!visit(flat[i]!, flat[i + 1]!)) return
    cursor = next
  } while (cursor !== '0')
}

/** How many users hold a record. */
export function recordCount(ctx: IssuanceContext, couponId: number): Promise<number> {
  return ctx.redis.hlen(couponKeys(ctx.redisPrefix, couponId).users)
}

// ---------------------------------------------------------------------------------------------------------
// Writes after Postgres decided.

/** A user's decided request: `[userId, record]`. */
export type Decision = [string, IssuanceRecord]

/** Moves the users' records forward (and off the queue), then publishes them for SSE. */
export async function recordDecisions(
  ctx: IssuanceContext,
  couponId: number,
  decisions: Decision[],
): Promise<void> {
  if (decisions.length === 0) return
  const keys = couponKeys(ctx.redisPrefix, couponId)
  const pairs = decisions.flatMap(([userId, record]) => [userId, encodeRecord(record)])
  await couponScripts.markDecided.run(ctx.redis, [keys.users, keys.queue, keys.state], pairs)
  await publishDecisions(ctx, couponId, pairs)
}

/** Adds refusals answered outside Redis to the coupon's `soldOut` counter; false if Redis lost the state. */
export async function addSoldOut(ctx: IssuanceContext, couponId: number, refusals: number): Promise<boolean> {
  const { state } = couponKeys(ctx.redisPrefix, couponId)
  return (await couponScripts.addSoldOut.run(ctx.redis, [state], [refusals])) !== undefined
}

/** Queue mode: lowers Redis's stock to what Postgres has left (never raises it, never creates the state). */
export async function lowerQueueStock(
  ctx: IssuanceContext,
  couponId: number,
  remaining: number,
): Promise<void> {
  await couponScripts.lowerQueueStock.run(
    ctx.redis,
    [couponKeys(ctx.redisPrefix, couponId).state],
    [remaining],
  )
}

/**
 * Queue mode: resolves waiting users scored up to `maxScore` (at most `max`) SOLD_OUT and publishes them;
 * returns how many.
 */
export async function resolveQueueSoldOut(
  ctx: IssuanceContext,
  couponId: number,
  max: number,
  maxScore: number,
): Promise<number> {
  const keys = couponKeys(ctx.redisPrefix, couponId)
  const pairs = await couponScripts.resolveSoldOut.run(
    ctx.redis,
    [keys.queue, keys.users, keys.state],
    [max, maxScore],
  )
  await publishDecisions(ctx, couponId, pairs)
  return pairs.length / 2
}

/** Sync mode: counts a request Postgres decided (issued: with its absolute stock and position). */
export async function countSyncRequest(
  ctx: IssuanceContext,
  couponId: number,
  decided: { outcome: 'issued'; stock: number; position: number } | { outcome: 'soldOut' },
): Promise<void> {
  const { state } = couponKeys(ctx.redisPrefix, couponId)
  const args = decided.outcome === 'issued' ? ['issued', decided.stock, decided.position] : ['soldOut', 0, 0]
  await couponScripts.countSyncRequest.run(ctx.redis, [state], args)
}
