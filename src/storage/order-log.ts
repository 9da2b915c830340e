import type { Db } from './postgres.ts'

/** One line of a coupon's public order log (see docs/api.md "Order log"). */
export interface OrderLogEntry {
  userHash: string
  position: number | null
  outcome: 'ISSUED' | 'SOLD_OUT'
  prequeuePlace: number | null
  shuffleKey: string | null
}

interface OrderLogRow {
  user_hash: string
  position: string | null
  outcome: 'ISSUED' | 'SOLD_OUT'
  prequeue_place: string | null
  shuffle_key: string | null
}

/** The coupon's stored log, by position (pre-queued users resolved SOLD_OUT last, by place). */
export async function readOrderLog(db: Db, couponId: number): Promise<OrderLogEntry[]> {
  const { rows } = await db.query<OrderLogRow>(
    `SELECT user_hash, position, outcome, prequeue_place, shuffle_key FROM coupon_order_log
     WHERE coupon_id = $1 ORDER BY position NULLS LAST, prequeue_place, user_hash`,
    [couponId],
  )
  return rows.map((row) => ({
    userHash: row.user_hash,
    position: row.position === null ? null : Number(row.position),
    outcome: row.outcome,
    prequeuePlace: row.prequeue_place === null ? null : Number(row.prequeue_place),
    shuffleKey: row.shuffle_key,
  }))
}

/** Stores the log once (a second writer with the same, deterministic log changes nothing). */
export async function writeOrderLog(db: Db, couponId: number, entries: OrderLogEntry[]): Promise<void> {
  const chunk = 5_000
  for (let from = 0; from < entries.length; from += chunk) {
    const part = entries.slice(from, from + chunk)
    await db.query(
      `INSERT INTO coupon_order_log (coupon_id, user_hash, position, outcome, prequeue_place, shuffle_key)
       SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])
       ON CONFLICT DO NOTHING`,
      [
        couponId,
        part.map((entry) => entry.userHash),
        part.map((entry) => entry.position),
        part.map((entry) => entry.outcome),
        part.map((entry) => entry.prequeuePlace),
        part.map((entry) => entry.shuffleKey),
      ],
    )
  }
}
