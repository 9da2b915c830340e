import type { Coupon } from '../domain/coupon.ts'
import type { ChangeRecord, PlannedChange } from '../domain/coupon-change.ts'
import { AppError } from '../domain/errors.ts'
import { lockCoupon, type Queryable, writeSteerableFields } from './coupons.ts'
import { type Db, type DbClient, inTransaction } from './postgres.ts'

/** One recorded change of a coupon (GET /admin/coupons/{id}/history). */
export interface CouponChange {
  id: number
  couponId: number
  at: Date
  admin: string
  change: ChangeRecord | { deleted: true }
}

interface ChangeRow {
  id: number
  coupon_id: number
  at: Date
  admin: string
  change: CouponChange['change']
}

async function recordChange(
  client: DbClient,
  couponId: number,
  admin: string,
  change: CouponChange['change'],
) {
  await client.query('INSERT INTO coupon_changes (coupon_id, admin, change) VALUES ($1, $2, $3)', [
    couponId,
    admin,
    JSON.stringify(change),
  ])
}

/**
 * Applies a change to a coupon in one transaction: the row is locked, `plan` checks the change against the
 * row as it is now (so two admins cannot both pass a check the other's change breaks), the row is written
 * and the change recorded. A patch that changes nothing writes nothing.
 */
export async function changeCoupon(
  db: Db,
  id: number,
  admin: string,
  plan: (coupon: Coupon) => PlannedChange,
): Promise<PlannedChange> {
  return inTransaction(db, async (client) => {
    const coupon = await lockCoupon(client, id)
    if (coupon === undefined) throw new AppError('COUPON_NOT_FOUND', `no coupon ${id}`)
    const planned = plan(coupon)
    if (Object.keys(planned.change).length === 0) return planned
    await writeSteerableFields(client, planned.updated)
    await recordChange(client, id, admin, planned.change)
    return planned
  })
}

/**
 * Deletes a coupon nobody holds a row of (COUPON_REQUESTED otherwise), recording the deletion. `beforeDelete`
 * runs with the row locked (sync's issuance waits on that lock): it refuses when Redis knows of a request.
 */
export async function deleteCoupon(
  db: Db,
  id: number,
  admin: string,
  beforeDelete: (coupon: Coupon) => Promise<void>,
): Promise<Coupon> {
  return inTransaction(db, async (client) => {
    const coupon = await lockCoupon(client, id)
    if (coupon === undefined) throw new AppError('COUPON_NOT_FOUND', `no coupon ${id}`)
    const { rows } = await client.query('SELECT 1 FROM user_coupons WHERE coupon_id = $1 LIMIT 1', [id])
    if (rows.length > 0 || coupon.issuedCount > 0) {
      throw new AppError('COUPON_REQUESTED', `coupon ${id} has been issued to users`)
    }
    await beforeDelete(coupon)
    await client.query('DELETE FROM coupons WHERE id = $1', [id])
    await recordChange(client, id, admin, { deleted: true })
    return coupon
  })
}

/** The coupon's changes, oldest first; `afterId` gives only the newer ones (the dashboard's polling). */
export async function listCouponChanges(
  db: Queryable,
  couponId: number,
  afterId = 0,
): Promise<CouponChange[]> {
  const { rows } = await db.query<ChangeRow>(
    `SELECT id, coupon_id, at, admin, change FROM coupon_changes
     WHERE coupon_id = $1 AND id > $2 ORDER BY id LIMIT 1000`,
    [couponId, afterId],
  )
  return rows.map((row) => ({
    id: row.id,
    couponId: row.coupon_id,
    at: row.at,
    admin: row.admin,
    change: row.change,
  }))
}
