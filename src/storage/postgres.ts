import { userInfo } from 'node:os'
import pg from 'pg'

export type Db = pg.Pool
export type DbClient = pg.PoolClient

export interface PostgresOptions {
  databaseUrl: string
  /** Schema for every table; tests use one schema each. */
  schema: string
  max?: number
  applicationName?: string
}

// bigint columns (ids, counts) fit in a JS number here: parse them as numbers, not strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value))

/** Like libpq, a URL without a user name connects as the operating-system user. */
function withDefaultUser(databaseUrl: string): string {
  const url = new URL(databaseUrl)
  if (url.username === '') url.username = userInfo().username
  return url.toString()
}

/** A pool whose connections all use `schema`; connection failures surface fast so callers can answer 503. */
export function createPool(options: PostgresOptions): Db {
  const pool = new pg.Pool({
    connectionString: withDefaultUser(options.databaseUrl),
    max: options.max ?? 10,
    connectionTimeoutMillis: 3_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: 15_000,
    // A client stalled mid-transaction (SIGSTOP, GC pause) must not hold a coupon's row lock forever.
    idle_in_transaction_session_timeout: 10_000,
    application_name: options.applicationName ?? 'coupon-rush',
    options: `-c search_path=${quoteIdent(options.schema)}`,
  })
  // An idle client losing its connection (Postgres restart) must not crash the process; the pool drops it and
  // the next query on a fresh client fails or succeeds on its own.
  pool.on('error', () => {})
  return pool
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** Creates the database named in the URL when it is missing (safe when two processes race). */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(withDefaultUser(databaseUrl))
  const database = decodeURIComponent(url.pathname.slice(1))
  if (database === '') return
  const probe = new pg.Client({
    connectionString: withDefaultUser(databaseUrl),
    connectionTimeoutMillis: 3_000,
  })
  try {
    await probe.connect()
    return
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error
  } finally {
    // The probe's answer is in; a failed close only drops a connection the server closes anyway.
    await probe.end().catch(() => {})
  }
  url.pathname = '/postgres'
  const admin = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 3_000 })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(database)}`)
  } catch (error) {
    // 42P04 duplicate_database, 23505: another process created it first.
    const code = (error as { code?: string }).code
    if (code !== '42P04' && code !== '23505') throw error
  } finally {
    await admin.end()
  }
}

/** Runs `work` in one transaction on one pooled client, rolling back on any error. */
export async function inTransaction<T>(db: Db, work: (client: DbClient) => Promise<T>): Promise<T> {
  const client = await db.connect()
  // A connection lost mid-transaction is also emitted as an 'error' event, which would crash the process
  // without a listener (the query in flight rejects anyway); the broken client is then dropped, not reused.
  let lost: Error | undefined
  const onError = (error: Error) => {
    lost = error
  }
  client.on('error', onError)
  try {
    await client.query('BEGIN')
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (error) {
    // The original error is what the caller needs; a failed ROLLBACK means the connection broke, and
    // Postgres rolls back a transaction whose connection ended.
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.off('error', onError)
    client.release(lost)
  }
}

/** The readiness probe's round trip: Postgres answers a query on a pool connection. */
export async function ping(db: Db): Promise<void> {
  await db.query('SELECT 1')
}

/** A statement of the hot paths, run with `{ ...statement, values }`. */
export interface PreparedStatement {
  readonly name: string
  readonly text: string
}

/**
 * A statement node-pg prepares once per connection under `name`, so Postgres parses and plans it once instead
 * of on every call: planning the writers' batch insert (three CTEs over `unnest`) cost 0.5–0.8 ms of Postgres
 * CPU per batch, 4–8 µs per row in batches of 100 (issue 20). The name carries a version, as the Redis scripts'
 * do: node-pg refuses one name for two texts on a connection, so a changed text takes a new name.
 */
export function prepared(name: string, version: number, text: string): PreparedStatement {
  return { name: `${name}-v${version}`, text }
}
