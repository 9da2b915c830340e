import type { Coupon } from '../../domain/coupon.ts'
import { type Lease, takeLease } from '../../redis/leases.ts'
import { inTransaction } from '../../storage/postgres.ts'
import { holderRows, type IssueRequest, issueBatch, lockStock } from '../../storage/user-coupons.ts'
import type { IssuanceContext } from '../core/context.ts'
import type { CouponState, CouponStates } from '../core/coupon-state.ts'
import { type Decision, issuedRecord, recordDecisions, resolveQueueSoldOut } from '../core/decisions.ts'
import type { PendingRequests, PendingSource } from '../core/rebuild.ts'
import type { IssuanceRecord } from '../core/record.ts'

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
  state: CouponState,
  coupon: Coupon,
  options: QueueDrainOptions = DEFAULT_QUEUE_DRAIN,
): Promise<DrainOutcome> {
  const outcome: DrainOutcome = { couponId: coupon.id, drained: false, issued: 0, soldOut: 0 }
  const lease = await takeLease(ctx.redis, state.keys.drainLease, options.leaseMs)
  if (lease === undefined) return outcome
  outcome.drained = true
  try {
    for (;;) {
      const batch = await issueHead(ctx, state, options.batchSize)
      outcome.issued += batch.issued
      // Admission refuses at once when this reaches 0; until then it keeps queueing.
      await state.lowerQueueStock(batch.remaining, batch.quantity)
      if (batch.remaining <= 0) {
        const resolved = await resolveSoldOut(ctx, state, lease, options)
        outcome.soldOut += resolved.count
        // An admin added stock meanwhile: the users still waiting get it, in queue order.
        if (resolved.stockCameBack && (await lease.renew(options.leaseMs))) continue
        break
      }
      if (!batch.more || !(await lease.renew(options.leaseMs))) break
    }
  } finally {
    await lease.release()
  }
  return outcome
}

/**
 * Issues up to one batch from the queue head in one transaction. The coupon row stays locked from reading
 * the remaining stock to the insert, so exactly that many are taken. Users who already hold a row (a drainer
 * died after its commit) come back as issued without using stock. Redis is updated only after the commit:
 * a crash in between leaves them queued, and the next drain reports them issued again, never twice.
 */
async function issueHead(ctx: IssuanceContext, state: CouponState, batchSize: number) {
  const { couponId } = state
  const written = await inTransaction(ctx.db, async (client) => {
    const { remaining, quantity } = await lockStock(client, couponId)
    if (remaining <= 0) return { remaining: 0, quantity, more: false, decisions: [] }
    const take = Math.min(remaining, batchSize)
    const head = await waitingHead(state, take)
    if (head.length === 0) return { remaining, quantity, more: false, decisions: [] }
    const records = await state.readRecords(head.map((user) => user.userId))
    const requests: IssueRequest[] = head.map((user, i) => ({
      userId: user.userId,
      position: user.position,
      requestedAt: new Date(requestedAtOf(records[i])),
    }))
    const result = await issueBatch(client, couponId, requests)
    const positions = new Map(head.map((user) => [user.userId, user.position]))
    const decisions: Decision[] = result.issued.map((row) => [
      row.userId,
      issuedRecord(row, positions.get(row.userId)),
    ])
    // Users Postgres had no stock for stay queued: the sold-out pass resolves them.
    return { ...(await lockStock(client, couponId)), more: head.length === take, decisions }
  })
  await recordDecisions(state, written.decisions)
  const { remaining, quantity, more } = written
  return { remaining, quantity, more, issued: written.decisions.length }
}

/**
 * Resolves the rest of the queue SOLD_OUT in chunks. Postgres has no stock, so nobody can get a row any
 * more; but a drainer that died after its commit may have left row holders queued, so each chunk is first
 * checked against Postgres and its holders recorded ISSUED. Each chunk is resolved with the coupon row
 * locked and its stock checked at 0: an admin adding stock (PATCH) waits for the chunk, and once stock is
 * back (`stockCameBack`) nobody more is resolved SOLD_OUT: the ones still waiting get it, in queue order.
 */
async function resolveSoldOut(
  ctx: IssuanceContext,
  state: CouponState,
  lease: Lease,
  options: QueueDrainOptions,
): Promise<{ count: number; stockCameBack: boolean }> {
  let count = 0
  for (;;) {
    const head = await waitingHead(state, options.batchSize)
    if (head.length === 0) break
    const userIds = head.map((user) => user.userId)
    const rows = await holderRows(ctx.db, state.couponId, userIds)
    const positions = new Map(head.map((user) => [user.userId, user.position]))
    await recordDecisions(
      state,
      rows.map((row) => [row.userId, issuedRecord(row, positions.get(row.userId))]),
    )
    const resolved = await inTransaction(ctx.db, async (client) => {
      if ((await lockStock(client, state.couponId)).remaining > 0) return undefined
      return resolveQueueSoldOut(state, options.batchSize, head.at(-1)!.position)
    })
    if (resolved === undefined) return { count, stockCameBack: true }
    count += resolved
    if (!(await lease.renew(options.leaseMs))) break
  }
  return { count, stockCameBack: false }
}

/**
 * The first `count` waiting users in score (= admission) order; with REDIS_REPLICA_ACK, once the replicas
 * have them (a failover must not bring back a queue without users who hold rows: positions would repeat).
 */
async function waitingHead(state: CouponState, count: number) {
  const reply = await state.readReplicated((pipeline) =>
    pipeline.zrange(state.keys.queue, 0, count - 1, 'WITHSCORES'),
  )
  const flat = Array.isArray(reply) ? reply.map(String) : []
  const head: { userId: string; position: number }[] = []
  for (let i = 0; i < flat.length; i += 2) head.push({ userId: flat[i]!, position: Number(flat[i + 1]) })
  return head
}

/** The request time from a pending record; a record rebuilt from the queue alone has none, so "now" stands in. */
function requestedAtOf(record: IssuanceRecord | undefined): number {
  const requestedAtMs = record?.requestedAtMs ?? 0
  return requestedAtMs > 0 ? requestedAtMs : Date.now()
}

/**
 * The queue's rebuild input: waiting users survive if only the state or users hash was lost, so they stay
 * pending. They hold no stock (the scheduler takes it from Postgres as it issues).
 */
export function queuePending(states: CouponStates): PendingSource {
  return async (coupon) => {
    const { redis, keys } = states.of(coupon.id)
    const waiting = await redis.zrange(keys.queue, 0, -1, 'WITHSCORES')
    const records: PendingRequests['records'] = []
    for (let i = 0; i < waiting.length; i += 2) {
      records.push([waiting[i]!, { status: 'PENDING', position: Number(waiting[i + 1]), requestedAtMs: 0 }])
    }
    return { records, reserveStock: false }
  }
}
