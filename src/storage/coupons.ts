import { createHash, randomBytes } from 'node:crypto'
import {
  type Coupon,
  checkNewCoupon,
  type IssueMode,
  type NewCoupon,
  type PrequeueOrder,
} from '../domain/coupon.ts'
import type { Discount } from '../domain/discount.ts'
import type { Db, DbClient } from './postgres.ts'

export type Queryable = Db | DbClient

interface CouponRow {
  id: number
  name: string
  discount: Discount
  quantity: number
  issued_count: number
  issue_starts_at: Date
  issue_ends_at: Date
  valid_days: number | null
  valid_until: Date | null
  issue_mode: IssueMode
  pow_max_number: number | null
  min_order_amount: number | null
  created_at: Date
  paused: boolean
  prequeue_starts_at: Date | null
  prequeue_order: PrequeueOrder | null
  prequeue_seed_commitment: string | null
  released_at: Date | null
}

const COLUMNS = `id, name, discount, quantity, issued_count, issue_starts_at, issue_ends_at,
  valid_days, valid_until, issue_mode, pow_max_number, min_order_amount, created_at, paused,
  prequeue_starts_at, prequeue_order, prequeue_seed_commitment, released_at`

function toCoupon(row: CouponRow): Coupon {
  return {
    id: row.id,
    name: row.name,
    discount: row.discount,
    quantity: row.quantity,
    issuedCount: row.issued_count,
    issueStartsAt: row.issue_starts_at,
    issueEndsAt: row.issue_ends_at,
    validDays: row.valid_days,
    validUntil: row.valid_until,
    issueMode: row.issue_mode,
    proofOfWork: row.pow_max_number === null ? null : { maxNumber: row.pow_max_number },
    minOrderAmount: row.min_order_amount,
    createdAt: row.created_at,
    paused: row.paused,
    prequeueStartsAt: row.prequeue_starts_at,
    prequeueOrder: row.prequeue_order,
    seedCommitment: row.prequeue_seed_commitment,
    ...(row.released_at === null ? {} : { releasedAt: row.released_at }),
  }
}

export type { NewCoupon }

/**
 * Checks every rule of a new coupon and inserts it, then runs `prepare` (setting up its Redis state) once the
 * row is committed and its connection is back in the pool: a set-up that queries Postgres itself never
 * waits for a second connection while holding one (with many concurrent creates on a small pool, every
 * create would hold one and wait for another). A set-up that fails removes the row again, so an invalid
 * coupon, or one whose set-up failed, leaves no row.
 */
export async function insertCoupon(
  db: Db,
  coupon: NewCoupon,
  prepare: (coupon: Coupon) => Promise<void> = async () => {},
): Promise<Coupon> {
  checkNewCoupon(coupon)
  const prequeueStartsAt = coupon.prequeueStartsAt ?? null
  // The shuffle seed is made (and committed to) before anyone can join the pre-queue, and never changes.
  const seed = prequeueStartsAt === null ? null : randomBytes(32)
  const commitment = seed === null ? null : createHash('sha256').update(seed).digest('hex')
  // One statement, no transaction: the mode's preparation below takes connections of its own, and a create
  // holding one while it waits for another could exhaust the pool under concurrent creates.
  const { rows } = await db.query<CouponRow>(
    `INSERT INTO coupons (name, discount, quantity, issue_starts_at, issue_ends_at, valid_days, valid_until,
       issue_mode, pow_max_number, min_order_amount, prequeue_starts_at, prequeue_order, prequeue_seed,
       prequeue_seed_commitment, order_log_salt)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING ${COLUMNS}`,
    [
      coupon.name,
      JSON.stringify(coupon.discount),
      coupon.quantity,
      coupon.issueStartsAt,
      coupon.issueEndsAt,
      coupon.validDays,
      coupon.validUntil,
      coupon.issueMode,
      coupon.proofOfWork?.maxNumber ?? null,
      coupon.minOrderAmount ?? null,
      prequeueStartsAt,
      prequeueStartsAt === null ? null : (coupon.prequeueOrder ?? 'arrival'),
      seed,
      commitment,
      randomBytes(16),
    ],
  )
  const created = toCoupon(rows[0]!)
  try {
    await prepare(created)
  } catch (error) {
    // Nobody was told its id yet; if this delete fails too, the coupon's state is rebuilt on first use.
    await db.query('DELETE FROM coupons WHERE id = $1', [created.id]).catch(() => {})
    throw error
  }
  return created
}

/** The coupon row locked for this transaction (FOR UPDATE), or undefined. */
export async function lockCoupon(client: DbClient, id: number): Promise<Coupon | undefined> {
  const { rows } = await client.query<CouponRow>(`SELECT ${COLUMNS} FROM coupons WHERE id = $1 FOR UPDATE`, [
    id,
  ])
  return rows[0] && toCoupon(rows[0])
}

/** Writes the steerable fields of a coupon (its row locked by the caller). */
export async function writeSteerableFields(client: DbClient, coupon: Coupon): Promise<void> {
  await client.query(
    `UPDATE coupons SET name = $2, issue_starts_at = $3, issue_ends_at = $4, quantity = $5, paused = $6
     WHERE id = $1`,
    [coupon.id, coupon.name, coupon.issueStartsAt, coupon.issueEndsAt, coupon.quantity, coupon.paused],
  )
}

export async function findCoupon(db: Queryable, id: number): Promise<Coupon | undefined> {
  const { rows } = await db.query<CouponRow>(`SELECT ${COLUMNS} FROM coupons WHERE id = $1`, [id])
  return rows[0] && toCoupon(rows[0])
}

export async function listCoupons(db: Queryable, limit = 100, beforeId?: number): Promise<Coupon[]> {
  const { rows } = await db.query<CouponRow>(
    `SELECT ${COLUMNS} FROM coupons WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2`,
    [beforeId ?? null, limit],
  )
  return rows.map(toCoupon)
}

/**
 * Coupons of the given modes whose issue window is open, opens within `lookaheadMs` (so workers are ready at
 * the first request), or closed less than `graceMs` ago (backlog still draining); never a released sale (its
 * Redis state is gone for good).
 */
export async function listActiveCoupons(
  db: Queryable,
  modes: IssueMode[],
  graceMs: number,
  lookaheadMs = 0,
): Promise<Coupon[]> {
  const { rows } = await db.query<CouponRow>(
    `SELECT ${COLUMNS} FROM coupons
     WHERE issue_mode = ANY($1)
       AND issue_starts_at <= now() + make_interval(secs => $3)
       AND issue_ends_at > now() - make_interval(secs => $2)
       AND released_at IS NULL
     ORDER BY id`,
    [modes, graceMs / 1000, lookaheadMs / 1000],
  )
  return rows.map(toCoupon)
}

/** The coupon's secrets: its shuffle seed (null without a pre-queue) and its order log's salt. */
export async function fairnessSecrets(
  db: Queryable,
  couponId: number,
): Promise<{ seed: Buffer | null; salt: Buffer | null }> {
  const { rows } = await db.query<{ prequeue_seed: Buffer | null; order_log_salt: Buffer | null }>(
    'SELECT prequeue_seed, order_log_salt FROM coupons WHERE id = $1',
    [couponId],
  )
  return { seed: rows[0]?.prequeue_seed ?? null, salt: rows[0]?.order_log_salt ?? null }
}

export async function issuedCount(db: Queryable, couponId: number): Promise<number> {
  const { rows } = await db.query<{ issued_count: number }>(
    'SELECT issued_count FROM coupons WHERE id = $1',
    [couponId],
  )
  return rows[0]?.issued_count ?? 0
}
