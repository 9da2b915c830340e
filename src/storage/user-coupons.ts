import type { Discount } from '../domain/discount.ts'
import { type Db, type DbClient, inTransaction, prepared } from './postgres.ts'

type Queryable = Db | DbClient

/** One accepted request on its way to becoming a row. */
export interface IssueRequest {
  userId: string
  position: number
  requestedAt: Date
}

/** A user's row of a coupon, as the issuance code reads it. */
export interface IssuedRow {
  id: number
  userId: string
  position: number | null
  requestedAt: Date
  issuedAt: Date
}

export interface BatchResult {
  /** Rows for the batch's users, newly inserted or already there (a retried batch). */
  issued: IssuedRow[]
  /** Users of the batch who got no row because Postgres's stock was exhausted. */
  soldOut: string[]
}

// Times cross the wire as epoch milliseconds (bigint) both ways: formatting and parsing thousands of
// timestamps per batch was a tenth of the writer's CPU. Exact to the millisecond (truncated, as a Date is).
const REQUESTED_AT = `timestamptz 'epoch' + requested_ms * interval '1 millisecond' AS requested_at`
const ISSUED_AT_MS = `floor(extract(epoch FROM issued_at) * 1000)::bigint AS issued_at_ms`

/**
 * Issues a batch of requests in the caller's transaction: locks the coupon row, inserts in position order
 * only as many new users as stock remains (`unnest` arrays: one statement for the whole batch), bumps
 * `issued_count` by exactly the rows inserted, and reports users that already held a row as issued.
 * Idempotent: replaying the same batch after a crash inserts nothing twice and consumes no stock.
 */
export async function issueBatch(
  client: DbClient,
  couponId: number,
  requests: IssueRequest[],
): Promise<BatchResult> {
  if (requests.length === 0) return { issued: [], soldOut: [] }
  // The row lock serialises writers of one coupon, so the NOT EXISTS and the remaining stock below are exact.
  return issueLocked(client, couponId, requests, await lockRemainingStock(client, couponId))
}

/** A unique violation: `issueFreshAlone` met a row of its batch already there (a replay). */
export function isUniqueViolation(error: unknown): boolean {
  return error instanceof Error && 'code' in error && error.code === '23505'
}

/**
 * A batch `issueFreshAlone` wrote whole: the requests in position order, `ids[i]` the row of `requests[i]`
 * (text: the writers only put it into the users' records), all issued at `issuedAtMs`.
 */
export interface FreshBatch {
  requests: IssueRequest[]
  ids: string[]
  issuedAtMs: number
}

/** A fresh batch as the rows `issueBatch` would have answered. */
export function freshRows(fresh: FreshBatch): IssuedRow[] {
  const issuedAt = new Date(fresh.issuedAtMs)
  return fresh.requests.map((request, i) => ({
    id: Number(fresh.ids[i]),
    userId: request.userId,
    position: request.position,
    requestedAt: request.requestedAt,
    issuedAt,
  }))
}

/** The requests in strictly rising position order, or undefined if two share a position. */
function inPositionOrder(requests: IssueRequest[]): IssueRequest[] | undefined {
  let ordered = requests
  for (let i = 1; i < requests.length; i++) {
    if (requests[i]!.position <= requests[i - 1]!.position) {
      ordered = [...requests].sort((a, b) => a.position - b.position)
      break
    }
  }
  for (let i = 1; i < ordered.length; i++) {
    if (ordered[i]!.position === ordered[i - 1]!.position) return undefined
  }
  return ordered
}

/**
 * The first attempt at a batch as one statement on its own (autocommit: one round trip, where BEGIN, the
 * lock query, the INSERT and COMMIT were four, each waiting for the writer's busy event loop while the
 * coupon row stayed locked): a batch of distinct users within the stock is one plain INSERT, without
 * `issueBatch`'s per-row conflict handling (which cost Postgres a third of its time per row). It answers one
 * row, the new ids joined in position order: a row per insert cost the writer more to parse than the
 * insert cost Postgres. Undefined, with nothing written, for any other batch (duplicate users or positions,
 * stock short). A batch already written, even in part (a replay after a crash), violates the unique
 * constraint and throws (see isUniqueViolation). Either way the caller runs `issueBatch`, which inserts only
 * what is missing, within the stock.
 */
export async function issueFreshAlone(
  db: Queryable,
  couponId: number,
  batch: IssueRequest[],
): Promise<FreshBatch | undefined> {
  const requests = inPositionOrder(batch)
  if (requests === undefined || requests.length === 0) return undefined
  const users = requests.map((r) => r.userId)
  if (new Set(users).size !== requests.length) return undefined
  const { rows } = await db.query<{ ids: string | null; issued_at_ms: number }>({
    ...FRESH_BATCH,
    values: [
      couponId,
      textArray(users),
      `{${requests.map((r) => r.position).join(',')}}`,
      `{${requests.map((r) => r.requestedAt.getTime()).join(',')}}`,
      requests.length,
    ],
  })
  const written = rows[0]
  if (written === undefined || written.ids === null) return undefined
  const ids = written.ids.split(',')
  if (ids.length !== requests.length)
    throw new Error(`issueFreshAlone: ${ids.length} rows for ${requests.length}`)
  return { requests, ids, issuedAtMs: written.issued_at_ms }
}

/**
 * issueFreshAlone's statement. The row lock serialises writers of one coupon; the stock check and the count see
 * the locked row. issued_at is now(), the transaction's start: the same for every row.
 */
const FRESH_BATCH = prepared(
  'issue-fresh-batch',
  1,
  `WITH locked AS (
       SELECT quantity - issued_count AS remaining,
              LEAST(now() + make_interval(days => valid_days), valid_until) AS expires_at
       FROM coupons WHERE id = $1 FOR UPDATE
     ),
     counted AS (
       UPDATE coupons SET issued_count = issued_count + $5
       WHERE id = $1 AND (SELECT remaining FROM locked) >= $5
     ),
     inserted AS (
       INSERT INTO user_coupons (coupon_id, user_id, position, requested_at, issued_at, expires_at)
       SELECT $1, r.user_id, r.position, ${REQUESTED_AT}, now(), l.expires_at
       FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS r(user_id, position, requested_ms)
       CROSS JOIN locked l
       WHERE l.remaining >= $5
       ORDER BY r.position
       RETURNING id, position
     )
     SELECT string_agg(id::text, ',' ORDER BY position) AS ids,
            floor(extract(epoch FROM now()) * 1000)::bigint AS issued_at_ms
     FROM inserted`,
)

/**
 * A text[] parameter as one array literal, each element in double quotes: node-pg's own serialisation
 * runs two regular expressions per element. User ids hold neither `"` nor `\` (auth/user-id.ts); should
 * one, node-pg escapes it.
 */
function textArray(values: string[]): string | string[] {
  if (values.length === 0) return '{}'
  // Each value is tested, not the joined literal: its `","` separators hold a quote themselves.
  for (const value of values) if (value.includes('"') || value.includes('\\')) return values
  return `{"${values.join('","')}"}`
}

/** issueBatch's insert of the rows `fresh` selects, and the count; $1 the coupon, $2..$4 the batch's arrays. */
function lockedBatchInsert(fresh: string): string {
  return `WITH fresh AS (${fresh}),
     inserted AS (
       INSERT INTO user_coupons (coupon_id, user_id, position, requested_at, issued_at, expires_at)
       SELECT $1, f.user_id, f.position, f.requested_at, now(),
              LEAST(now() + make_interval(days => c.valid_days), c.valid_until)
       FROM fresh f CROSS JOIN coupons c WHERE c.id = $1
       ORDER BY f.position
       ON CONFLICT (coupon_id, user_id) DO NOTHING
       RETURNING id, user_id, position, issued_at
     ),
     counted AS (
       UPDATE coupons SET issued_count = issued_count + (SELECT count(*) FROM inserted)
       WHERE id = $1 AND (SELECT count(*) FROM inserted) > 0
     )
     SELECT id, user_id, position, ${ISSUED_AT_MS} FROM inserted`
}

/** Stock for the whole batch (the normal case): insert it all and let the unique constraint drop replays. */
const LOCKED_BATCH = prepared(
  'issue-locked-batch',
  1,
  lockedBatchInsert(`SELECT user_id, position, ${REQUESTED_AT}
         FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS r(user_id, position, requested_ms)`),
)

/**
 * A batch that may exceed the stock (after Redis lost state) takes the careful path: new users only, lowest
 * positions first, at most the remaining stock ($5).
 */
const LOCKED_BATCH_WITHIN_STOCK = prepared(
  'issue-locked-batch-within-stock',
  1,
  lockedBatchInsert(`SELECT b.* FROM (
           SELECT DISTINCT ON (user_id) user_id, position, ${REQUESTED_AT}
           FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS r(user_id, position, requested_ms)
           ORDER BY user_id, position
         ) b
         WHERE NOT EXISTS (SELECT 1 FROM user_coupons uc WHERE uc.coupon_id = $1 AND uc.user_id = b.user_id)
         ORDER BY b.position
         LIMIT $5`),
)

/** issueBatch's insert, the coupon row locked already with `remaining` stock left. */
async function issueLocked(
  client: DbClient,
  couponId: number,
  requests: IssueRequest[],
  remaining: number,
): Promise<BatchResult> {
  const distinctUsers = new Set(requests.map((r) => r.userId)).size
  const values = [
    couponId,
    requests.map((r) => r.userId),
    requests.map((r) => r.position),
    requests.map((r) => r.requestedAt.getTime()),
  ]
  const { rows } = await client.query<{
    id: number
    user_id: string
    position: number | null
    issued_at_ms: number
  }>(
    distinctUsers <= remaining
      ? { ...LOCKED_BATCH, values }
      : { ...LOCKED_BATCH_WITHIN_STOCK, values: [...values, remaining] },
  )
  // An inserted row's request time is the request's (sent as milliseconds, stored exactly).
  const requestedAt = new Map(requests.map((r) => [r.userId, r.requestedAt]))
  const issued: IssuedRow[] = rows.map((row) => ({
    id: row.id,
    userId: row.user_id,
    position: row.position,
    requestedAt: requestedAt.get(row.user_id)!,
    issuedAt: new Date(row.issued_at_ms),
  }))
  const holders = new Set(issued.map((row) => row.userId))
  let missing = [...new Set(requests.map((r) => r.userId))].filter((user) => !holders.has(user))
  if (missing.length > 0) {
    // Only a replayed batch (or stock run out) gets here: users who already held a row count as issued.
    for (const row of await holderRows(client, couponId, missing)) {
      issued.push(row)
      holders.add(row.userId)
    }
    missing = missing.filter((user) => !holders.has(user))
  }
  return { issued, soldOut: missing }
}

export interface UserCouponView {
  id: number
  couponId: number
  name: string
  discount: Discount
  position: number | null
  requestedAt: Date
  issuedAt: Date
  expiresAt: Date
  minOrderAmount: number | null
  /** The current redemption (all null while the coupon is not redeemed). */
  redeemedAt: Date | null
  orderId: string | null
  orderAmount: number | null
  discountAmount: number | null
  /** When the last redemption was cancelled; null once redeemed again. */
  cancelledAt: Date | null
}

const VIEW = `uc.id, uc.coupon_id, c.name, c.discount, uc.position, uc.requested_at, uc.issued_at, uc.expires_at,
  c.min_order_amount, uc.redeemed_at, uc.order_id, uc.order_amount, uc.discount_amount, uc.cancelled_at`

interface ViewRow {
  id: number
  coupon_id: number
  name: string
  discount: Discount
  position: number | null
  requested_at: Date
  issued_at: Date
  expires_at: Date
  min_order_amount: number | null
  redeemed_at: Date | null
  order_id: string | null
  order_amount: number | null
  discount_amount: number | null
  cancelled_at: Date | null
}

function toView(row: ViewRow): UserCouponView {
  return {
    id: row.id,
    couponId: row.coupon_id,
    name: row.name,
    discount: row.discount,
    position: row.position,
    requestedAt: row.requested_at,
    issuedAt: row.issued_at,
    expiresAt: row.expires_at,
    minOrderAmount: row.min_order_amount,
    redeemedAt: row.redeemed_at,
    orderId: row.order_id,
    orderAmount: row.order_amount,
    discountAmount: row.discount_amount,
    cancelledAt: row.cancelled_at,
  }
}

export async function listUserCoupons(db: Queryable, userId: string): Promise<UserCouponView[]> {
  const { rows } = await db.query<ViewRow>(
    `SELECT ${VIEW} FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id
     WHERE uc.user_id = $1 ORDER BY uc.issued_at DESC, uc.id DESC`,
    [userId],
  )
  return rows.map(toView)
}

export async function findUserCouponOf(db: Queryable, couponId: number, userId: string) {
  const { rows } = await db.query<ViewRow>(
    `SELECT ${VIEW} FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id
     WHERE uc.coupon_id = $1 AND uc.user_id = $2`,
    [couponId, userId],
  )
  return rows[0] && toView(rows[0])
}

/** Locks and returns the user's coupon for redemption; another user's id reads as not found. */
export async function lockUserCoupon(client: DbClient, id: number, userId: string) {
  const { rows } = await client.query<ViewRow>(
    `SELECT ${VIEW} FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id
     WHERE uc.id = $1 AND uc.user_id = $2 FOR UPDATE OF uc`,
    [id, userId],
  )
  return rows[0] && toView(rows[0])
}

/** Rows of a coupon (of the given users only, if any): what recovery and the queue's reconciliation read. */
export async function holderRows(db: Queryable, couponId: number, userIds?: string[]): Promise<IssuedRow[]> {
  const { rows } = await db.query<{
    id: number
    user_id: string
    position: number | null
    requested_at: Date
    issued_at: Date
  }>(
    `SELECT id, user_id, position, requested_at, issued_at FROM user_coupons
     WHERE coupon_id = $1 AND ($2::text[] IS NULL OR user_id = ANY($2::text[]))`,
    [couponId, userIds ?? null],
  )
  return rows.map((row) => ({
    id: row.id,
    userId: row.user_id,
    position: row.position,
    requestedAt: row.requested_at,
    issuedAt: row.issued_at,
  }))
}

/**
 * Quantity minus issued rows, with the coupon row locked (FOR UPDATE) for the rest of the caller's
 * transaction: every writer of the coupon's rows takes this lock first, so what it reads stays exact.
 */
export async function lockRemainingStock(client: DbClient, couponId: number): Promise<number> {
  return (await lockStock(client, couponId)).remaining
}

const LOCK_STOCK = prepared(
  'lock-stock',
  1,
  'SELECT quantity - issued_count AS remaining, quantity FROM coupons WHERE id = $1 FOR UPDATE',
)

/** The coupon's stock left and its quantity, its row locked for the transaction (FOR UPDATE). */
export async function lockStock(
  client: DbClient,
  couponId: number,
): Promise<{ remaining: number; quantity: number }> {
  const { rows } = await client.query<{ remaining: number; quantity: number }>({
    ...LOCK_STOCK,
    values: [couponId],
  })
  if (rows[0] === undefined) throw new Error(`coupon ${couponId} does not exist`)
  return rows[0]
}

/**
 * What a rebuild of the coupon's Redis state starts from: its rows and its quantity, read in one transaction
 * under FOR SHARE, which waits for any writer transaction of this coupon in flight, so its rows are counted.
 * The quantity is read there too (`undefined` for a coupon that is gone): a cached copy of the coupon may be
 * one an operator changed.
 */
/** What a rebuild reads of the coupon row under its lock: an admin may have changed it since it was cached. */
export interface CouponSteering {
  quantity: number
  issueStartsAt: Date
  issueEndsAt: Date
  paused: boolean
}

export async function issuedSnapshot(
  db: Db,
  couponId: number,
): Promise<{ steering: CouponSteering | undefined; rows: IssuedRow[] }> {
  return inTransaction(db, async (client) => {
    const locked = await client.query<CouponSteering>(
      `SELECT quantity, issue_starts_at AS "issueStartsAt", issue_ends_at AS "issueEndsAt", paused
         FROM coupons WHERE id = $1 FOR SHARE`,
      [couponId],
    )
    return { steering: locked.rows[0], rows: await holderRows(client, couponId) }
  })
}
