import type { IssuanceStatus } from '../domain/issuance.ts'
import type { Db } from './postgres.ts'

/*
 * Retention (issue 18): what an ended sale's release writes to Postgres and what reads answer from
 * afterwards. Every write is idempotent, so a release interrupted anywhere is simply run again.
 */

/** A decision Postgres has no row for, as the coupon's Redis record held it. */
export interface StoredOutcome {
  userId: string
  status: IssuanceStatus
  position: number
  requestedAtMs: number
  decidedAtMs?: number
  userCouponId?: number
}

/** The Redis counters the stats need, frozen at the release. */
export interface FinalCounters {
  loaded: boolean
  stock: number
  seq: number
  soldOut: number
  resolvedSoldOut: number
  requested: number
}

/** A sale whose Redis state is due for release (or whose release was interrupted after its mark). */
export interface ReleaseCandidate {
  couponId: number
  released: boolean
}

/** Sales that ended more than `afterMs` ago and still hold Redis state, oldest end first. */
export async function releaseCandidates(db: Db, afterMs: number, limit = 100): Promise<ReleaseCandidate[]> {
  const { rows } = await db.query<{ id: number; released: boolean }>(
    `SELECT id, released_at IS NOT NULL AS released FROM coupons
     WHERE redis_freed_at IS NULL AND issue_ends_at < now() - make_interval(secs => $1)
     ORDER BY issue_ends_at LIMIT $2`,
    [afterMs / 1000, limit],
  )
  return rows.map((row) => ({ couponId: row.id, released: row.released }))
}

/** Copies outcomes (one statement per call; a user already copied is left as it is). */
export async function saveOutcomes(db: Db, couponId: number, outcomes: StoredOutcome[]): Promise<void> {
  if (outcomes.length === 0) return
  await db.query(
    `INSERT INTO issuance_outcomes (coupon_id, user_id, status, position, requested_at, decided_at, user_coupon_id)
     SELECT $1, u, s, p, timestamptz 'epoch' + r * interval '1 millisecond',
            timestamptz 'epoch' + d * interval '1 millisecond', c
     FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) AS o(u, s, p, r, d, c)
     ON CONFLICT (coupon_id, user_id) DO NOTHING`,
    [
      couponId,
      outcomes.map((o) => o.userId),
      outcomes.map((o) => o.status),
      outcomes.map((o) => o.position),
      outcomes.map((o) => o.requestedAtMs),
      outcomes.map((o) => o.decidedAtMs ?? null),
      outcomes.map((o) => o.userCouponId ?? null),
    ],
  )
}

/** Marks the sale released with its final counters (once: a second mark keeps the first). */
export async function markReleased(db: Db, couponId: number, counters: FinalCounters): Promise<void> {
  await db.query(
    `UPDATE coupons SET released_at = now(), final_loaded = $2, final_stock = $3, final_seq = $4,
       final_sold_out = $5, final_resolved_sold_out = $6, final_requested = $7
     WHERE id = $1 AND released_at IS NULL`,
    [
      couponId,
      counters.loaded,
      counters.stock,
      counters.seq,
      counters.soldOut,
      counters.resolvedSoldOut,
      counters.requested,
    ],
  )
}

/** Whether the sale's state was released to Postgres (it is never rebuilt in Redis then). */
export async function isReleased(db: Db, couponId: number): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM coupons WHERE id = $1 AND released_at IS NOT NULL', [
    couponId,
  ])
  return rows.length > 0
}

/** The sale's Redis keys are gone: the sweep is done with it. */
export async function markRedisFreed(db: Db, couponId: number): Promise<void> {
  await db.query('UPDATE coupons SET redis_freed_at = now() WHERE id = $1', [couponId])
}

/** A released sale's final counters (undefined while it is not released). */
export async function finalCounters(db: Db, couponId: number): Promise<FinalCounters | undefined> {
  const { rows } = await db.query<{
    final_loaded: boolean
    final_stock: number
    final_seq: number
    final_sold_out: number
    final_resolved_sold_out: number
    final_requested: number
  }>(
    `SELECT final_loaded, final_stock, final_seq, final_sold_out, final_resolved_sold_out, final_requested
     FROM coupons WHERE id = $1 AND released_at IS NOT NULL`,
    [couponId],
  )
  const row = rows[0]
  return (
    row && {
      loaded: row.final_loaded,
      stock: row.final_stock,
      seq: row.final_seq,
      soldOut: row.final_sold_out,
      resolvedSoldOut: row.final_resolved_sold_out,
      requested: row.final_requested,
    }
  )
}

interface OutcomeRow {
  user_id: string
  status: IssuanceStatus
  position: number
  requested_ms: number
  decided_ms: number | null
  user_coupon_id: number | null
}

const OUTCOME_COLUMNS = `user_id, status, position,
  floor(extract(epoch FROM requested_at) * 1000)::bigint AS requested_ms,
  floor(extract(epoch FROM decided_at) * 1000)::bigint AS decided_ms, user_coupon_id`

function toOutcome(row: OutcomeRow): StoredOutcome {
  return {
    userId: row.user_id,
    status: row.status,
    position: row.position,
    requestedAtMs: row.requested_ms,
    ...(row.decided_ms === null ? {} : { decidedAtMs: row.decided_ms }),
    ...(row.user_coupon_id === null ? {} : { userCouponId: row.user_coupon_id }),
  }
}

/** The user's copied outcome of a released sale. */
export async function findOutcome(
  db: Db,
  couponId: number,
  userId: string,
): Promise<StoredOutcome | undefined> {
  const { rows } = await db.query<OutcomeRow>(
    `SELECT ${OUTCOME_COLUMNS} FROM issuance_outcomes WHERE coupon_id = $1 AND user_id = $2`,
    [couponId, userId],
  )
  return rows[0] && toOutcome(rows[0])
}

/** The audit of a released sale: copied outcomes that contradict the rows (SOLD_OUT with a row, ISSUED without). */
export async function outcomeConflicts(db: Db, couponId: number) {
  const { rows } = await db.query<{ user_id: string; status: IssuanceStatus; has_row: boolean }>(
    `SELECT o.user_id, o.status, uc.id IS NOT NULL AS has_row FROM issuance_outcomes o
     LEFT JOIN user_coupons uc ON uc.coupon_id = o.coupon_id AND uc.user_id = o.user_id
     WHERE o.coupon_id = $1
       AND ((o.status = 'SOLD_OUT' AND uc.id IS NOT NULL) OR (o.status = 'ISSUED' AND uc.id IS NULL))`,
    [couponId],
  )
  return {
    soldOutWithRow: rows.filter((row) => row.has_row).map((row) => row.user_id),
    issuedWithoutRow: rows.filter((row) => !row.has_row).map((row) => row.user_id),
  }
}
