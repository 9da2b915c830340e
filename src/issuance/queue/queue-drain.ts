import { randomUUID } from 'node:crypto'
import type { Coupon } from '../../domain/coupon.ts'
import { couponKeys } from '../../redis/keys.ts'
import { runScript } from '../../redis/scripts.ts'
import { type DbClient, inTransaction } from '../../storage/postgres.ts'
import { holderRows, type IssueRequest, issueBatch } from '../../storage/user-coupons.ts'
import { type IssuanceContext, publishDecisions } from '../context.ts'
import { recordDecisions } from '../decisions.ts'
import { decodeRecord, type IssuanceRecord } from '../records.ts'

export interface QueueDrainOptions {
  /** Users issued (or resolved sold out) per Postgres transaction / Redis script call. */
  batchSize: number
  /** How long one drainer may hold a coupon without renewing (renewed after every batch). */
  leaseMs: number
}

export const DEFAULT_QUEUE_DRAIN: QueueDrainOptions = { batchSize: 5_000, leaseMs: 30_000 }

export interface DrainOutcome {
  couponId: number
  /** False when another process held the coupon's drain lease, so this call did nothing. */
  drained: boolean
  /** Users recorded ISSUED by this call (including rows a crashed drainer had committed). */
  issued: number
  /** Users resolved SOLD_OUT by this call. */
  soldOut: number
}

/**
 * Drains one coupon's waiting queue under its drain lease: while Postgres has stock, issues the queue head
 * in score order in one transaction per batch, then moves those users to ISSUED in Redis; once Postgres has
 * none left, resolves the rest of the queue SOLD_OUT. Safe to run anywhere, any time: the lease only saves
 * work, the Postgres row lock, stock guard and unique constraint are what prevent over-issue and duplicates.
 */
export async function drainQueue(
  ctx: IssuanceContext,
  coupon: Coupon,
  options: QueueDrainOptions = DEFAULT_QUEUE_DRAIN,
): Promise<DrainOutcome> {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  const outcome: DrainOutcome = { couponId: coupon.id, drained: false, issued: 0, soldOut: 0 }
  const token = randomUUID()
  if (!(await takeLease(ctx, keys.drainLease, token, options.leaseMs))) return outcome
  outcome.drained = true
  try {
    for (;;) {
      const batch = await issueHead(ctx, coupon, options.batchSize)
      outcome.issued += batch.issued
      // Admission refuses at once when this reaches 0; until then it keeps queueing.
      await runScript(ctx.redis, 'lowerQueueStock', [keys.state], [batch.remaining])
      if (batch.remaining <= 0) {
        outcome.soldOut += await resolveSoldOut(ctx, coupon.id, token, options)
        break
      }
      if (!batch.more || !(await renewLease(ctx, keys.drainLease, token, options.leaseMs))) break
    }
  } finally {
    await runScript(ctx.redis, 'releaseLease', [keys.drainLease], [token]).catch((error: unknown) => {
      unreleasedLeases.set(keys.drainLease, token)
      throw error
    })
  }
  return outcome
}

/**
 * Drain leases this process holds but could not release: Redis went away mid-drain. A Redis restarted from
 * its append-only file still has them, and every drain of the coupon would wait them out (leaseMs); this
 * process knows its own token, so its next drain releases it first.
 */
const unreleasedLeases = new Map<string, string>()

async function takeLease(ctx: IssuanceContext, lease: string, token: string, leaseMs: number) {
  const stale = unreleasedLeases.get(lease)
  if (stale !== undefined) {
    await runScript(ctx.redis, 'releaseLease', [lease], [stale])
    unreleasedLeases.delete(lease)
  }
  return (await ctx.redis.set(lease, token, 'PX', leaseMs, 'NX')) === 'OK'
}

/**
 * Issues up to one batch from the queue head in one transaction. The coupon row stays locked from reading
 * the remaining stock to the insert, so exactly that many are taken. Users who already hold a row (a drainer
 * died after its commit) come back as issued without using stock. Redis is updated only after the commit:
 * a crash in between leaves them queued, and the next drain reports them issued again, never twice.
 */
async function issueHead(ctx: IssuanceContext, coupon: Coupon, batchSize: number) {
  const keys = couponKeys(ctx.redisPrefix, coupon.id)
  const written = await inTransaction(ctx.db, async (client) => {
    const remaining = await remainingStock(client, coupon.id)
    if (remaining <= 0) return { remaining: 0, more: false, decisions: [] }
    const take = Math.min(remaining, batchSize)
    const head = await waitingHead(ctx, coupon.id, take)
    if (head.length === 0) return { remaining, more: false, decisions: [] }
    const records = await ctx.redis.hmget(keys.users, ...head.map((user) => user.userId))
    const requests: IssueRequest[] = head.map((user, i) => ({
      userId: user.userId,
      position: user.position,
      requestedAt: new Date(requestedAtOf(records[i] ?? null)),
    }))
    const result = await issueBatch(client, coupon.id, requests)
    const byUser = new Map(requests.map((request) => [request.userId, request]))
    const decisions: [string, IssuanceRecord][] = result.issued.map((row) => [
      row.userId,
      {
        status: 'ISSUED',
        position: row.position ?? byUser.get(row.userId)!.position,
        requestedAtMs: byUser.get(row.userId)!.requestedAt.getTime(),
        userCouponId: row.id,
        decidedAtMs: row.issuedAt.getTime(),
      },
    ])
    // Users Postgres had no stock for stay queued: the sold-out pass resolves them.
    return {
      remaining: await remainingStock(client, coupon.id),
      more: head.length === take,
      decisions,
    }
  })
  await recordDecisions(ctx, coupon.id, written.decisions)
  return { remaining: written.remaining, more: written.more, issued: written.decisions.length }
}

/**
 * Resolves the rest of the queue SOLD_OUT in chunks. Postgres has no stock, so nobody can get a row any
 * more; but a drainer that died after its commit may have left row holders queued, so each chunk is first
 * checked against Postgres and its holders recorded ISSUED.
 */
async function resolveSoldOut(
  ctx: IssuanceContext,
  couponId: number,
  token: string,
  options: QueueDrainOptions,
): Promise<number> {
  const keys = couponKeys(ctx.redisPrefix, couponId)
  let resolved = 0
  for (;;) {
    const head = await waitingHead(ctx, couponId, options.batchSize)
    if (head.length === 0) break
    const rows = await holderRows(
      ctx.db,
      couponId,
      head.map((user) => user.userId),
    )
    const scores = new Map(head.map((user) => [user.userId, user.position]))
    await recordDecisions(
      ctx,
      couponId,
      rows.map((row) => [
        row.user_id,
        {
          status: 'ISSUED',
          position: row.position ?? scores.get(row.user_id)!,
          requestedAtMs: row.requested_at.getTime(),
          userCouponId: row.id,
          decidedAtMs: row.issued_at.getTime(),
        },
      ]),
    )
    const reply = await runScript(
      ctx.redis,
      'resolveSoldOut',
      [keys.queue, keys.users, keys.state],
      [options.batchSize, head.at(-1)!.position],
    )
    const decided = Array.isArray(reply) ? reply.map(String) : []
    await publishDecisions(ctx, couponId, decided)
    resolved += decided.length / 2
    if (!(await renewLease(ctx, keys.drainLease, token, options.leaseMs))) break
  }
  return resolved
}

/** Quantity minus issued rows, with the coupon row locked for the rest of the transaction. */
async function remainingStock(client: DbClient, couponId: number): Promise<number> {
  const { rows } = await client.query<{ remaining: number }>(
    'SELECT quantity - issued_count AS remaining FROM coupons WHERE id = $1 FOR UPDATE',
    [couponId],
  )
  if (rows[0] === undefined) throw new Error(`coupon ${couponId} does not exist`)
  return rows[0].remaining
}

/** The first `count` waiting users in score (= admission) order. */
async function waitingHead(ctx: IssuanceContext, couponId: number, count: number) {
  const flat = await ctx.redis.zrange(couponKeys(ctx.redisPrefix, couponId).queue, 0, count - 1, 'WITHSCORES')
  const head: { userId: string; position: number }[] = []
  for (let i = 0; i < flat.length; i += 2) head.push({ userId: flat[i]!, position: Number(flat[i + 1]) })
  return head
}

/** The request time from a pending record; a record rebuilt from the queue alone has none, so "now" stands in. */
function requestedAtOf(raw: string | null): number {
  const requestedAtMs = raw === null ? 0 : decodeRecord(raw).requestedAtMs
  return requestedAtMs > 0 ? requestedAtMs : Date.now()
}

async function renewLease(
  ctx: IssuanceContext,
  lease: string,
  token: string,
  leaseMs: number,
): Promise<boolean> {
  const [renewed] = (await runScript(ctx.redis, 'renewDrainLease', [lease], [token, leaseMs])) as [number]
  return renewed === 1
}
