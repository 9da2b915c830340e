import type { Coupon } from '../domain/coupon.ts'
import { inTransaction } from '../storage/postgres.ts'
import { type IssueRequest, issueBatch } from '../storage/user-coupons.ts'
import type { IssuanceContext } from './context.ts'
import { type Decision, recordDecisions } from './coupon-store.ts'

/**
 * Writes accepted requests of one coupon to Postgres in one transaction, then records the decisions in Redis
 * and announces them. Idempotent, so a batch replayed after a crash (or taken over from a stalled worker)
 * issues nothing twice. Shared by the stream writers and the Kafka consumers.
 */
export async function writeIssued(
  ctx: IssuanceContext,
  coupon: Coupon,
  requests: IssueRequest[],
): Promise<Decision[]> {
  const result = await inTransaction(ctx.db, (client) => issueBatch(client, coupon.id, requests))
  const byUser = new Map(requests.map((request) => [request.userId, request]))
  const decidedAtMs = Date.now()
  const decisions: Decision[] = []
  for (const row of result.issued) {
    const request = byUser.get(row.userId)
    if (request === undefined) continue
    decisions.push([
      row.userId,
      {
        status: 'ISSUED',
        position: row.position ?? request.position,
        requestedAtMs: request.requestedAt.getTime(),
        userCouponId: row.id,
        decidedAtMs: row.issuedAt.getTime(),
      },
    ])
  }
  // Only after Redis lost state can Postgres run out before Redis did: those requests end SOLD_OUT, honestly.
  for (const userId of result.soldOut) {
    const request = byUser.get(userId)!
    decisions.push([
      userId,
      {
        status: 'SOLD_OUT',
        position: request.position,
        requestedAtMs: request.requestedAt.getTime(),
        decidedAtMs,
      },
    ])
  }
  await recordDecisions(ctx, coupon.id, decisions)
  return decisions
}
