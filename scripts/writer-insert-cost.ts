/**
 * Postgres's cost per row of a stream writer's batch, three ways, in alternating rounds on one connection:
 * - `insert`: the writers' own statement (`issueFreshAlone`: one INSERT … SELECT FROM unnest, the coupon row
 *   locked and its count bumped in the same statement);
 * - `copy-text` and `copy-binary`: the same rows by `COPY user_coupons FROM STDIN` (pg-copy-streams) in a
 *   transaction that first locks the coupon row, bumps its count and takes the batch's ids from the identity
 *   sequence (the writers hand each user their row's id), in text and in binary format.
 * Every variant writes fresh users into a coupon of its own in a schema of this run's own (migrated like the
 * service's, dropped at the end), and checks that the coupon holds exactly its rows and count. What it
 * prints per round: rows per second of wall time, the backend's CPU per row (from /proc) and this process's.
 *
 * It answers whether COPY would lift the writer's floor (issue 20 suggested it): a row's cost is the heap
 * tuple, the three indexes of user_coupons and their WAL, whichever statement carries it.
 *
 * Usage: npx node scripts/writer-insert-cost.ts [--rows 100000] [--batch 2000] [--rounds 3]
 *          [--database-url postgres://127.0.0.1:5432/coupon_rush]
 */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { from as copyFrom } from 'pg-copy-streams'
import { processCpuSeconds } from '../bench/lib/cpu.ts'
import { insertCoupon } from '../src/storage/coupons.ts'
import { migrate } from '../src/storage/migrate.ts'
import { createPool, type Db, ensureDatabase, quoteIdent } from '../src/storage/postgres.ts'
import { type IssueRequest, issueFreshAlone } from '../src/storage/user-coupons.ts'

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    'database-url': { type: 'string', default: 'postgres://127.0.0.1:5432/coupon_rush' },
  },
})
const rows = Number(values.rows)
const batchSize = Number(values.batch)
const rounds = Number(values.rounds)
const databaseUrl = values['database-url']
const schema = `writer_insert_cost_${process.pid}`

/** Postgres's epoch (2000-01-01) in Unix milliseconds: binary COPY sends timestamps from it, in µs. */
const PG_EPOCH_MS = 946_684_800_000n
/** Binary COPY's signature, flags (none) and header extension length (none). */
const BINARY_HEADER = Buffer.from([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
])
const COLUMNS = '(id, coupon_id, user_id, position, requested_at, issued_at, expires_at)'

/**
 * The COPY variants' first statement: the coupon row locked, its count bumped by the batch, and the batch's
 * ids, issue time and expiry (what the writers' statement computes itself).
 */
const LOCK_AND_COUNT = `WITH locked AS (
     SELECT quantity - issued_count AS remaining,
            LEAST(now() + make_interval(days => valid_days), valid_until) AS expires_at
     FROM coupons WHERE id = $1 FOR UPDATE
   ),
   counted AS (
     UPDATE coupons SET issued_count = issued_count + $2 WHERE id = $1 AND (SELECT remaining FROM locked) >= $2
   )
   SELECT (SELECT remaining FROM locked) >= $2 AS within_stock,
          floor(extract(epoch FROM now()) * 1000000)::bigint AS issued_us,
          floor(extract(epoch FROM (SELECT expires_at FROM locked)) * 1000000)::bigint AS expires_us,
          (SELECT string_agg(nextval('user_coupons_id_seq')::text, ',') FROM generate_series(1, $2)) AS ids`

interface RowTimes {
  ids: string[]
  issuedUs: bigint
  expiresUs: bigint
}

function textRows(couponId: number, batch: IssueRequest[], times: RowTimes): string {
  const issued = new Date(Number(times.issuedUs / 1000n)).toISOString()
  const expires = new Date(Number(times.expiresUs / 1000n)).toISOString()
  let text = ''
  for (const [i, request] of batch.entries()) {
    text += `${times.ids[i]}\t${couponId}\t${request.userId}\t${request.position}\t`
    text += `${request.requestedAt.toISOString()}\t${issued}\t${expires}\n`
  }
  return text
}

function binaryRows(couponId: number, batch: IssueRequest[], times: RowTimes): Buffer {
  const users = batch.map((request) => Buffer.from(request.userId, 'utf8'))
  // Per row: a field count (2 bytes), then each of the 7 fields as its length (4) and bytes (8, or the id's).
  const size = users.reduce((sum, user) => sum + 2 + 7 * 4 + 6 * 8 + user.length, BINARY_HEADER.length + 2)
  const out = Buffer.allocUnsafe(size)
  let at = BINARY_HEADER.copy(out, 0)
  const int64 = (value: bigint) => {
    at = out.writeInt32BE(8, at)
    at = out.writeBigInt64BE(value, at)
  }
  const issued = times.issuedUs - PG_EPOCH_MS * 1000n
  const expires = times.expiresUs - PG_EPOCH_MS * 1000n
  for (const [i, request] of batch.entries()) {
    const user = users[i]!
    at = out.writeInt16BE(7, at)
    int64(BigInt(times.ids[i]!))
    int64(BigInt(couponId))
    at = out.writeInt32BE(user.length, at)
    at += user.copy(out, at)
    int64(BigInt(request.position))
    int64((BigInt(request.requestedAt.getTime()) - PG_EPOCH_MS) * 1000n)
    int64(issued)
    int64(expires)
  }
  at = out.writeInt16BE(-1, at)
  return out.subarray(0, at)
}

async function copyBatch(db: Db, couponId: number, batch: IssueRequest[], binary: boolean): Promise<void> {
  const client = await db.connect()
  try {
    await client.query('BEGIN')
    const { rows: answer } = await client.query<{
      within_stock: boolean
      issued_us: string
      expires_us: string
      ids: string
    }>({ name: 'writer-insert-cost-lock', text: LOCK_AND_COUNT, values: [couponId, batch.length] })
    const times = answer[0]
    if (times === undefined || !times.within_stock) throw new Error('the coupon has no stock for the batch')
    const rowTimes = {
      ids: times.ids.split(','),
      issuedUs: BigInt(times.issued_us),
      expiresUs: BigInt(times.expires_us),
    }
    const payload = binary ? binaryRows(couponId, batch, rowTimes) : textRows(couponId, batch, rowTimes)
    const copy = client.query(
      copyFrom(`COPY user_coupons ${COLUMNS} FROM STDIN${binary ? ' (FORMAT binary)' : ''}`),
    )
    await pipeline(Readable.from([payload]), copy)
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK')
    throw error
  } finally {
    client.release()
  }
}

const VARIANTS: Record<string, (db: Db, couponId: number, batch: IssueRequest[]) => Promise<void>> = {
  insert: async (db, couponId, batch) => {
    if ((await issueFreshAlone(db, couponId, batch)) === undefined)
      throw new Error('a fresh batch was refused')
  },
  'copy-text': (db, couponId, batch) => copyBatch(db, couponId, batch, false),
  'copy-binary': (db, couponId, batch) => copyBatch(db, couponId, batch, true),
}

async function newCoupon(db: Db): Promise<number> {
  const now = Date.now()
  const coupon = await insertCoupon(db, {
    name: 'writer insert cost',
    discount: { type: 'FIXED', amount: 1_000 },
    quantity: rows,
    issueStartsAt: new Date(now),
    issueEndsAt: new Date(now + 86_400_000),
    validDays: 7,
    validUntil: null,
    issueMode: 'stream',
  })
  return coupon.id
}

/** Fresh users (ids spread as the service's are, not in insertion order) in batches, in position order. */
function batchesOf(tag: string): IssueRequest[][] {
  const batches: IssueRequest[][] = []
  const startMs = Date.now()
  for (let first = 0; first < rows; first += batchSize) {
    const batch: IssueRequest[] = []
    for (let n = first; n < Math.min(first + batchSize, rows); n++)
      batch.push({
        userId: `${tag}-${(n * 7_919) % rows}-${n}`,
        position: n + 1,
        requestedAt: new Date(startMs + n),
      })
    batches.push(batch)
  }
  return batches
}

await ensureDatabase(databaseUrl)
const db = createPool({ databaseUrl, schema, max: 1, applicationName: 'writer-insert-cost' })
try {
  await migrate(db, schema)
  const backend = (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
  console.log(`schema ${schema}; ${rows} rows per variant and round, batches of ${batchSize}`)
  for (let round = 1; round <= rounds; round++) {
    for (const [name, write] of Object.entries(VARIANTS)) {
      const couponId = await newCoupon(db)
      const batches = batchesOf(`${name}-${round}`)
      const backendBefore = processCpuSeconds(backend)
      const ownBefore = process.cpuUsage()
      const startedAt = performance.now()
      for (const batch of batches) await write(db, couponId, batch)
      const seconds = (performance.now() - startedAt) / 1000
      const backendCpu = processCpuSeconds(backend) - backendBefore
      const own = process.cpuUsage(ownBefore)
      const { rows: check } = await db.query<{ written: number; counted: number }>(
        `SELECT (SELECT count(*)::int FROM user_coupons WHERE coupon_id = $1) AS written,
                (SELECT issued_count FROM coupons WHERE id = $1) AS counted`,
        [couponId],
      )
      if (check[0]?.written !== rows || check[0]?.counted !== rows)
        throw new Error(`${name}: ${JSON.stringify(check[0])} for ${rows} rows`)
      console.log(
        `round ${round} ${name.padEnd(11)} ${String(Math.round(rows / seconds)).padStart(7)} rows/s; ` +
          `Postgres ${((backendCpu * 1e6) / rows).toFixed(1)} µs per row, ` +
          `this process ${((own.user + own.system) / rows).toFixed(1)} µs per row`,
      )
    }
  }
} finally {
  await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)
  await db.end()
}
