import type { Coupon, Issuance } from '../../domain/coupon.ts'
import { inTransaction } from '../../storage/postgres.ts'
import {
  type BatchResult,
  type FreshBatch,
  freshRows,
  type IssuedRow,
  type IssueRequest,
  issueBatch,
  issueFreshAlone,
  isUniqueViolation,
} from '../../storage/user-coupons.ts'
import type { IssuanceContext } from './context.ts'
import type { CouponState } from './coupon-state.ts'
import { encodeIssued, encodeRecord, type IssuanceRecord, toIssuance } from './record.ts'

/*
 * The decisions: a request becomes ISSUED once Postgres holds its row, or SOLD_OUT. This module builds the
 * records, writes them to the coupon's Redis state and publishes them to every API process (the
 * DecisionHub pushes them to the users' SSE streams), for every mode.
 */

/** A user's decided request: `[userId, record]`. */
export type Decision = [string, IssuanceRecord]

/** What a row must tell to become an ISSUED record. */
type RowFacts = Pick<IssuedRow, 'id' | 'position' | 'requestedAt' | 'issuedAt'>

/** The ISSUED record of a user's row; `positionIfNone` stands in for a row written without a position. */
export function issuedRecord(row: RowFacts, positionIfNone = 0): IssuanceRecord {
  return {
    status: 'ISSUED',
    position: row.position ?? positionIfNone,
    requestedAtMs: row.requestedAt.getTime(),
    userCouponId: row.id,
    decidedAtMs: row.issuedAt.getTime(),
  }
}

/** A user's row as their issuance status (rows are only ever ISSUED); a row without a position shows none. */
export function issuanceOfRow(couponId: number, userId: string, row: RowFacts): Issuance {
  const { position, ...issuance } = toIssuance(couponId, userId, issuedRecord(row))
  return row.position === null ? issuance : { ...issuance, position }
}

/** Moves the users' records forward in Redis (and off the queue), then publishes them for SSE. */
export async function recordDecisions(state: CouponState, decisions: Decision[]): Promise<void> {
  if (decisions.length === 0) return
  const pairs = decisions.flatMap(([userId, record]) => [userId, encodeRecord(record)])
  await state.markDecided(pairs)
  await publishDecisions(state, pairs)
}

/**
 * Queue mode: resolves waiting users scored up to `maxScore` (at most `max`) SOLD_OUT and publishes them;
 * returns how many.
 */
export async function resolveQueueSoldOut(
  state: CouponState,
  max: number,
  maxScore: number,
): Promise<number> {
  const pairs = await state.resolveQueueSoldOut(max, maxScore)
  await publishDecisions(state, pairs)
  return pairs.length / 2
}

/**
 * Writes accepted requests of one coupon to Postgres in one transaction, then records the decisions in Redis
 * and announces them. Idempotent, so a batch replayed after a crash (or taken over from a stalled worker)
 * issues nothing twice. Shared by the stream writers and the Kafka consumers.
 */
export async function writeIssued(
  ctx: IssuanceContext,
  state: CouponState,
  coupon: Coupon,
  requests: IssueRequest[],
): Promise<Decision[]> {
  const written = await issueInPostgres(ctx, coupon, requests)
  const result = 'ids' in written ? { issued: freshRows(written), soldOut: [] } : written
  const decisions = decisionsOf(requests, result)
  await recordDecisions(state, decisions)
  return decisions
}

/**
 * The stream writers' `writeIssued`: the decisions are recorded, the batch's stream entries acknowledged and
 * trimmed and the decisions announced in one call (settleIssued-4.lua), after Postgres committed them.
 */
export async function writeAndSettle(
  ctx: IssuanceContext,
  state: CouponState,
  coupon: Coupon,
  requests: IssueRequest[],
  settle: { group: string; ids: string[] },
): Promise<void> {
  const written = await issueInPostgres(ctx, coupon, requests)
  const pairs = 'ids' in written ? freshPairs(written) : pairsOf(requests, written)
  await state.settleIssued(settle.group, settle.ids, pairs)
}

/**
 * The Postgres half: a plain insert first, as one statement on its own (`issueFreshAlone`); a batch it
 * refuses (duplicate users, the stock maybe short) or some of whose rows are there already (a replay: a
 * unique violation) is written the duplicate-safe way (`issueBatch`).
 */
async function issueInPostgres(
  ctx: IssuanceContext,
  coupon: Coupon,
  requests: IssueRequest[],
): Promise<FreshBatch | BatchResult> {
  try {
    const alone = await issueFreshAlone(ctx.db, coupon.id, requests)
    if (alone !== undefined) return alone
  } catch (error) {
    if (!isUniqueViolation(error)) throw error
  }
  // Refused (duplicate users, stock short) or a replay: the duplicate-safe way, in a transaction of its own.
  return inTransaction(ctx.db, (client) => issueBatch(client, coupon.id, requests))
}

/** A fresh batch's decisions as pairsOf gives them: every request ISSUED, in position order. */
function freshPairs({ requests, ids, issuedAtMs }: FreshBatch): string[] {
  const pairs: string[] = []
  for (let i = 0; i < requests.length; i++) {
    const { userId, position, requestedAt } = requests[i]!
    pairs.push(userId, encodeIssued(position, requestedAt.getTime(), ids[i]!, issuedAtMs))
  }
  return pairs
}

/**
 * A batch's decisions as the flat `[userId, encodedRecord, ...]` pairs the Redis scripts take, encoded
 * straight from the rows (the stream writers': no Decision objects per row), in the order decisionsOf gives.
 */
function pairsOf(requests: IssueRequest[], result: BatchResult): string[] {
  const pairs: string[] = []
  let byUser: Map<string, IssueRequest> | undefined
  for (const row of result.issued) {
    let { position } = row
    if (position === null) {
      // Only a row written without a position (not by these writers): the request's stands in.
      byUser ??= new Map(requests.map((request) => [request.userId, request]))
      position = byUser.get(row.userId)?.position ?? 0
    }
    pairs.push(row.userId, encodeIssued(position, row.requestedAt.getTime(), row.id, row.issuedAt.getTime()))
  }
  if (result.soldOut.length > 0) {
    for (const [userId, record] of soldOutDecisions(requests, result.soldOut)) {
      pairs.push(userId, encodeRecord(record))
    }
  }
  return pairs
}

/** The decisions of a batch Postgres wrote (`issueInPostgres`). */
function decisionsOf(requests: IssueRequest[], result: BatchResult): Decision[] {
  const byUser = new Map(requests.map((request) => [request.userId, request]))
  const decisions: Decision[] = []
  for (const row of result.issued) {
    const request = byUser.get(row.userId)
    if (request !== undefined) decisions.push([row.userId, issuedRecord(row, request.position)])
  }
  decisions.push(...soldOutDecisions(requests, result.soldOut))
  return decisions
}

/** Only after Redis lost state can Postgres run out before Redis did: those requests end SOLD_OUT, honestly. */
function soldOutDecisions(requests: IssueRequest[], soldOut: string[]): Decision[] {
  if (soldOut.length === 0) return []
  const byUser = new Map(requests.map((request) => [request.userId, request]))
  const decidedAtMs = Date.now()
  const decisions: Decision[] = []
  for (const userId of soldOut) {
    const request = byUser.get(userId)
    if (request === undefined) continue
    const { position, requestedAt } = request
    decisions.push([
      userId,
      { status: 'SOLD_OUT', position, requestedAtMs: requestedAt.getTime(), decidedAtMs },
    ])
  }
  return decisions
}

/**
 * A published batch of decisions, compact: the coupon and the flat `[userId, record, ...]` pairs the Redis
 * script took. A process decodes only the users it has an SSE connection for (see DecisionHub).
 */
export interface DecisionMessage {
  couponId: number
  pairs: string[]
}

/** Announces decided requests to every API process (they push them to users over SSE). */
export async function publishDecisions(state: CouponState, pairs: string[]): Promise<void> {
  if (pairs.length === 0) return
  const message: DecisionMessage = { couponId: state.couponId, pairs }
  await state.redis.publish(state.channels.decisions, JSON.stringify(message))
}
