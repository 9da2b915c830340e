/**
 * What the demo and the benchmark read straight from Postgres and Redis: row counts while a sale drains,
 * the correctness audit (rows, duplicates, over-issue, FCFS), transaction and command counters.
 */
import { userInfo } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import pg from 'pg'
import { createPool, type Db, ensureDatabase, quoteIdent } from '../../src/storage/postgres.ts'
import { type LatencySummary, type LoadResult, nowMs, summarize } from './load-protocol.ts'

/** Postgres as the benchmark reads it: one small pool on the run's schema, counting its own queries. */
export class BenchDb {
  readonly pool: Db
  /** Queries (each its own transaction) this pool ran; subtracted from the server's transaction counts. */
  queries = 0
  constructor(databaseUrl: string, schema: string) {
    this.pool = createPool({ databaseUrl, schema, max: 2, applicationName: 'coupon-rush-bench' })
  }

  async query<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
    this.queries++
    return (await this.pool.query<T>(text, values)).rows
  }

  async issuedCount(couponId: number): Promise<number> {
    const rows = await this.query<{ issued_count: number }>(
      'SELECT issued_count FROM coupons WHERE id = $1',
      [couponId],
    )
    return rows[0]?.issued_count ?? 0
  }

  private closed = false

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.pool.end()
  }
}

/** One statement on a connection of its own, closed after it. */
async function once<T extends pg.QueryResultRow>(databaseUrl: string, sql: string): Promise<T[]> {
  const url = new URL(databaseUrl)
  if (url.username === '') url.username = userInfo().username
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return (await client.query<T>(sql)).rows
  } finally {
    await client.end()
  }
}

/**
 * `pg_stat_database.xact_commit + xact_rollback` of the URL's database. The probe's own connection adds one
 * transaction, which shows in the next reading.
 */
export async function databaseTransactions(databaseUrl: string): Promise<number> {
  const sql = `SELECT (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = current_database()`
  const [row] = await once<{ n: string }>(databaseUrl, sql)
  return Number(row?.n ?? 0)
}

export async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  await once(databaseUrl, `DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)
}

/** Creates the URL's database if it does not exist; true when this call created it. */
export async function createDatabaseIfMissing(databaseUrl: string): Promise<boolean> {
  try {
    await once(databaseUrl, 'SELECT 1')
    return false
  } catch (error) {
    // 3D000 invalid_catalog_name: the database does not exist.
    if ((error as { code?: string }).code !== '3D000') throw error
  }
  await ensureDatabase(databaseUrl)
  return true
}

/** Drops a database the benchmark created (from the server's `postgres` database). */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl)
  const database = decodeURIComponent(url.pathname.slice(1))
  url.pathname = '/postgres'
  await once(url.toString(), `DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`)
}

export interface RowWatch {
  /** Rows counted when the watch ended. */
  count: number
  reached: boolean
  /** Epoch ms when the first row / the target count was first seen by a poll. */
  firstRowSeenAtMs?: number
  /** Rows already there at the first sighting (a writer commits a batch at a time). */
  firstCount: number
  lastRowSeenAtMs?: number
  /** Polls made (each ~10 ms apart: the resolution of the times above). */
  polls: number
}

/**
 * Polls `coupons.issued_count` (updated in the same transaction as the rows, so it is what Postgres has
 * committed) from the moment it is created, keeping when each count was first seen. The target is often
 * only known after the load (how many were admitted), so it is given to `finish`.
 */
export class RowWatcher {
  private readonly timeline: [number, number][] = []
  private target = Number.POSITIVE_INFINITY
  // A watcher nobody finishes (its phase failed) stops on its own after a while.
  private deadline = Date.now() + 900_000
  private cancelled = false
  private error: Error | undefined
  private polls = 0
  private readonly done: Promise<void>
  private readonly db: BenchDb
  private readonly couponId: number
  private seenRow = false
  private firstRowListener: (() => void) | undefined

  constructor(db: BenchDb, couponId: number, intervalMs = 10, onCount?: (count: number) => void) {
    this.db = db
    this.couponId = couponId
    this.done = this.loop(intervalMs, onCount)
  }

  private async loop(intervalMs: number, onCount?: (count: number) => void): Promise<void> {
    let last = -1
    while (!this.cancelled) {
      let count: number
      try {
        count = await this.db.issuedCount(this.couponId)
      } catch (error) {
        this.error = error as Error
        return
      }
      const at = nowMs()
      this.polls++
      if (count !== last) {
        this.timeline.push([at, count])
        last = count
        onCount?.(count)
        if (count > 0 && !this.seenRow) {
          this.seenRow = true
          this.firstRowListener?.()
        }
      }
      if (count >= this.target || Date.now() > this.deadline) return
      await sleep(intervalMs)
    }
  }

  /** Calls `listener` once, when a poll first sees a row (at once if one did already). */
  onFirstRow(listener: () => void): void {
    if (this.seenRow) listener()
    else this.firstRowListener = listener
  }

  /** Stops polling (when the phase failed before `finish`). */
  cancel(): void {
    this.cancelled = true
  }

  /** Waits until `target` rows exist (or `timeoutMs` passed) and says when they were seen. */
  async finish(target: number, timeoutMs: number): Promise<RowWatch> {
    this.target = target
    this.deadline = Date.now() + timeoutMs
    await this.done
    if (this.error) throw this.error
    const first = this.timeline.find(([, count]) => count > 0)
    const reached = this.timeline.find(([, count]) => count >= target)
    return {
      count: this.timeline.at(-1)?.[1] ?? 0,
      reached: reached !== undefined,
      firstRowSeenAtMs: first?.[0],
      firstCount: first?.[1] ?? 0,
      lastRowSeenAtMs: reached?.[0],
      polls: this.polls,
    }
  }
}

/**
 * Follows a coupon's new rows as they commit (by id: the writers of one coupon hold its row lock, so ids
 * commit in order) and notes when each user's row was first seen.
 */
export class RowFollower {
  readonly seenAt = new Map<string, number>()
  private target = Number.POSITIVE_INFINITY
  private deadline = Date.now() + 900_000
  private cancelled = false
  private error: Error | undefined
  private readonly done: Promise<void>

  constructor(db: BenchDb, couponId: number, intervalMs = 10) {
    this.done = this.loop(db, couponId, intervalMs)
  }

  private async loop(db: BenchDb, couponId: number, intervalMs: number): Promise<void> {
    let lastId = 0
    while (!this.cancelled && this.seenAt.size < this.target && Date.now() < this.deadline) {
      let rows: { id: number; user_id: string }[]
      try {
        rows = await db.query<{ id: number; user_id: string }>(
          'SELECT id, user_id FROM user_coupons WHERE coupon_id = $1 AND id > $2 ORDER BY id LIMIT 20000',
          [couponId, lastId],
        )
      } catch (error) {
        this.error = error as Error
        return
      }
      const at = nowMs()
      for (const row of rows) {
        if (!this.seenAt.has(row.user_id)) this.seenAt.set(row.user_id, at)
        lastId = Math.max(lastId, Number(row.id))
      }
      if (rows.length < 20_000) await sleep(intervalMs)
    }
  }

  async finish(target: number, timeoutMs: number): Promise<Map<string, number>> {
    this.target = target
    this.deadline = Date.now() + timeoutMs
    await this.done
    if (this.error) throw this.error
    return this.seenAt
  }

  cancel(): void {
    this.cancelled = true
  }
}

export interface Audit {
  quantity: number
  rows: number
  /** Rows beyond the first per user (the unique constraint makes this 0 unless the schema is broken). */
  duplicateRows: number
  /** Users answered 2xx more than once (a second admission of the same user). */
  doubleAccepted: number
  overIssued: number
  /** coupons.issued_count against the rows. */
  issuedCountMatches: boolean
  /** Users answered 410 SOLD_OUT who nevertheless hold a row. */
  soldOutWithRow: number
  /** 2xx users still without a row when the audit ran (expected 0 once the backlog drained; queue: losers). */
  acceptedWithoutRow: number
  /** Rows of users who were never answered 2xx. */
  rowsWithoutAcceptance: number
  /** FCFS: the issued users are exactly the accepted ones (stream, kafka, sync), or the first by position (queue). */
  fcfs: boolean
  /** stream/kafka: positions of the rows are exactly 1..rows and match the answered positions. */
  positionsExact?: boolean
  /**
   * (Absent in results written before this check.) Arrival order as the client saw it: pairs of admitted requests where one was answered before the other
   * was sent (`checked`: requests with at least one such earlier request), and how many of them hold a
   * position not above every earlier-answered one. Requests in flight together may go either way.
   */
  arrivalOrder?: { checked: number; violations: number }
  problems: string[]
  /** issued_at - requested_at per row as the server recorded them (ms). */
  rowLatency: LatencySummary
  /**
   * Per admitted user with a row: issued_at - the moment the client sent the request (ms). issued_at is the
   * writer's transaction start, so this is a lower bound of the time until the row was visible.
   */
  requestToRow: LatencySummary
  /** Epoch ms of the latest issued_at. */
  lastIssuedAtMs?: number
}

interface IssuedRow {
  user_id: string
  position: number | null
  requested_ms: number
  issued_ms: number
}

/** FCFS: who holds a row against who should (everybody admitted; queue: the first `quantity` by position). */
function fcfsCheck(
  mode: string,
  quantity: number,
  answered: Map<string, number>,
  holders: Map<string, number | null>,
  problems: string[],
): Pick<Audit, 'fcfs' | 'positionsExact'> {
  let winners = [...answered.keys()]
  if (mode === 'queue') {
    winners = [...answered.entries()]
      .sort((a, b) => a[1] - b[1])
      .slice(0, quantity)
      .map(([user]) => user)
  }
  const fcfs = winners.length === holders.size && winners.every((user) => holders.has(user))
  if (!fcfs) {
    const missing = winners.filter((user) => !holders.has(user)).length
    const extra = [...holders.keys()].filter((user) => !winners.includes(user)).length
    problems.push(`FCFS: ${missing} of the first/accepted users hold no row, ${extra} rows belong to others`)
  }
  let positionsExact: boolean | undefined
  if (mode === 'stream' || mode === 'kafka') {
    const positions = [...holders.values()].map(Number).sort((a, b) => a - b)
    positionsExact =
      positions.every((position, index) => position === index + 1) &&
      [...holders.entries()].every(([user, position]) => answered.get(user) === position)
    if (!positionsExact) problems.push('positions of the rows are not exactly 1..rows as answered')
  }
  return { fcfs, positionsExact }
}

/** Per admitted user with a row: issued_at - when the client first sent the request; and the last issued_at. */
function requestToRowTimes(
  rows: IssuedRow[],
  accepted: LoadResult['accepted'],
): Pick<Audit, 'requestToRow' | 'lastIssuedAtMs'> {
  let lastIssuedAtMs: number | undefined
  for (const row of rows) lastIssuedAtMs = Math.max(lastIssuedAtMs ?? 0, Number(row.issued_ms))
  const sentAt = new Map<string, number>()
  accepted.users.forEach((user, index) => {
    const at = accepted.sentAtMs[index]!
    if (at > 0 && !sentAt.has(user)) sentAt.set(user, at)
  })
  const requestToRow: number[] = []
  for (const row of rows) {
    const at = sentAt.get(row.user_id)
    if (at !== undefined) requestToRow.push(Number(row.issued_ms) - at)
  }
  return { requestToRow: summarize(requestToRow), lastIssuedAtMs }
}

/** The correctness audit of one coupon, read from Postgres and checked against what the clients were told. */
export async function auditCoupon(
  db: BenchDb,
  couponId: number,
  quantity: number,
  mode: string,
  load: Pick<LoadResult, 'accepted' | 'soldOutUsers'>,
): Promise<Audit> {
  const rows = await db.query<IssuedRow>(
    `SELECT user_id, position,
            extract(epoch FROM requested_at) * 1000 AS requested_ms,
            extract(epoch FROM issued_at) * 1000 AS issued_ms
     FROM user_coupons WHERE coupon_id = $1 ORDER BY position NULLS LAST, id`,
    [couponId],
  )
  const [counter] = await db.query<{ issued_count: number }>(
    'SELECT issued_count FROM coupons WHERE id = $1',
    [couponId],
  )
  const problems: string[] = []
  const holders = new Map<string, number | null>()
  let duplicateRows = 0
  for (const row of rows) {
    if (holders.has(row.user_id)) duplicateRows++
    else holders.set(row.user_id, row.position === null ? null : Number(row.position))
  }
  const answered = new Map<string, number>()
  let doubleAccepted = 0
  load.accepted.users.forEach((user, index) => {
    if (answered.has(user)) doubleAccepted++
    else answered.set(user, load.accepted.positions[index]!)
  })
  const soldOutWithRow = load.soldOutUsers.filter((user) => holders.has(user)).length
  const rowsWithoutAcceptance = [...holders.keys()].filter((user) => !answered.has(user)).length
  const acceptedWithoutRow = [...answered.keys()].filter((user) => !holders.has(user)).length
  const { fcfs, positionsExact } = fcfsCheck(mode, quantity, answered, holders, problems)
  const arrivalOrder = arrivalOrderCheck(load.accepted)
  if (arrivalOrder.violations > 0)
    problems.push(
      `${arrivalOrder.violations} admitted requests hold a position below one answered before they were sent`,
    )
  if (duplicateRows > 0) problems.push(`${duplicateRows} duplicate rows`)
  if (doubleAccepted > 0) problems.push(`${doubleAccepted} users were admitted twice`)
  if (rows.length > quantity) problems.push(`${rows.length - quantity} rows over the quantity`)
  if (soldOutWithRow > 0) problems.push(`${soldOutWithRow} users answered SOLD_OUT hold a row`)
  if (rowsWithoutAcceptance > 0) problems.push(`${rowsWithoutAcceptance} rows of users never answered 2xx`)
  const issuedCountMatches = (counter?.issued_count ?? -1) === rows.length
  if (!issuedCountMatches)
    problems.push(`coupons.issued_count is ${counter?.issued_count} but there are ${rows.length} rows`)
  return {
    quantity,
    rows: rows.length,
    duplicateRows,
    doubleAccepted,
    overIssued: Math.max(rows.length - quantity, 0),
    issuedCountMatches,
    soldOutWithRow,
    acceptedWithoutRow,
    rowsWithoutAcceptance,
    fcfs,
    positionsExact,
    arrivalOrder,
    problems,
    rowLatency: summarize(rows.map((row) => Number(row.issued_ms) - Number(row.requested_ms))),
    ...requestToRowTimes(rows, load.accepted),
  }
}

/** Every FCFS check of the audit passed. */
export function fcfsHeld(audit: Audit): boolean {
  return (
    audit.fcfs &&
    audit.positionsExact !== false &&
    audit.soldOutWithRow === 0 &&
    (audit.arrivalOrder?.violations ?? 0) === 0
  )
}

/**
 * When request A was answered before request B was sent, the server admitted A before B arrived, so A's
 * position must be the smaller. Each user's first admission counts; answers without a position (sync) are
 * not checked.
 */
export function arrivalOrderCheck(accepted: LoadResult['accepted']): {
  checked: number
  violations: number
} {
  const first = new Set<string>()
  const items: { sent: number; answered: number; position: number }[] = []
  accepted.users.forEach((user, index) => {
    if (first.has(user)) return
    first.add(user)
    const position = accepted.positions[index]!
    if (position > 0)
      items.push({ sent: accepted.sentAtMs[index]!, answered: accepted.answeredAtMs[index]!, position })
  })
  const bySent = [...items].sort((a, b) => a.sent - b.sent)
  const byAnswered = [...items].sort((a, b) => a.answered - b.answered)
  let checked = 0
  let violations = 0
  let highest = 0
  let next = 0
  for (const item of bySent) {
    while (next < byAnswered.length && byAnswered[next]!.answered < item.sent)
      highest = Math.max(highest, byAnswered[next++]!.position)
    if (next === 0) continue
    checked++
    if (item.position <= highest) violations++
  }
  return { checked, violations }
}

/** Redis as the benchmark reads it: command counters and clean-up by key prefix. */
export class BenchRedis {
  readonly redis: Redis

  constructor(url: string) {
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2 })
    this.redis.on('error', () => {})
  }

  /** `INFO commandstats`: command -> calls (commands run inside Lua scripts count too). */
  async commandStats(): Promise<Map<string, number>> {
    const info = await this.redis.info('commandstats')
    const stats = new Map<string, number>()
    for (const line of info.split('\n')) {
      const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim())
      if (match) stats.set(match[1]!, Number(match[2]))
    }
    return stats
  }

  async deleteByPrefix(prefix: string): Promise<number> {
    let deleted = 0
    let cursor = '0'
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) deleted += await this.redis.del(...keys)
    } while (cursor !== '0')
    return deleted
  }

  async close(): Promise<void> {
    this.redis.disconnect()
  }
}

/** after - before per command, without the probe's own `info`. */
export function commandDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const delta = new Map<string, number>()
  for (const [command, calls] of after) {
    if (command === 'info') continue
    const diff = calls - (before.get(command) ?? 0)
    if (diff > 0) delta.set(command, diff)
  }
  return delta
}
