import type { Db } from './postgres.ts'

/** Everything the audit needs from Postgres about one coupon's rows. */
export async function auditRows(db: Db, couponId: number) {
  const { rows } = await db.query<{
    rows: number
    distinct_users: number
    issued_count: number
    quantity: number
  }>(
    `SELECT (SELECT count(*) FROM user_coupons WHERE coupon_id = $1)::int AS rows,
            (SELECT count(DISTINCT user_id) FROM user_coupons WHERE coupon_id = $1)::int AS distinct_users,
            c.issued_count, c.quantity
     FROM coupons c WHERE c.id = $1`,
    [couponId],
  )
  return rows[0]
}

/** The users holding a row of the coupon (the audit compares them with Redis's records). */
export async function rowHolders(db: Db, couponId: number): Promise<Set<string>> {
  const { rows } = await db.query<{ user_id: string }>(
    'SELECT user_id FROM user_coupons WHERE coupon_id = $1',
    [couponId],
  )
  return new Set(rows.map((row) => row.user_id))
}
