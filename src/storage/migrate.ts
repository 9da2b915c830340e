import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { type Db, inTransaction, quoteIdent } from './postgres.ts'

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url))
// Any fixed number: every process that migrates takes this advisory lock, so two starting at once queue up.
const MIGRATION_LOCK = 4_242_001

export interface Migration {
  id: number
  name: string
  sql: string
}

export async function readMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((file) => /^\d{3}_[a-z0-9_]+\.sql$/.test(file)).sort()
  return Promise.all(
    files.map(async (file) => ({
      id: Number(file.slice(0, 3)),
      name: file,
      sql: await readFile(new URL(file, `file://${MIGRATIONS_DIR}`), 'utf8'),
    })),
  )
}

/** Applies the numbered migrations not yet applied to `schema`, all in one transaction. Returns their names. */
export async function migrate(db: Db, schema: string): Promise<string[]> {
  const migrations = await readMigrations()
  return inTransaction(db, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`)
    await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`)
    await client.query(
      `CREATE TABLE IF NOT EXISTS migrations (
         id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    )
    const { rows } = await client.query<{ id: number }>('SELECT id FROM migrations')
    const applied = new Set(rows.map((row) => row.id))
    const done: string[] = []
    for (const migration of migrations) {
      if (applied.has(migration.id)) continue
      await client.query(migration.sql)
      await client.query('INSERT INTO migrations (id, name) VALUES ($1, $2)', [migration.id, migration.name])
      done.push(migration.name)
    }
    return done
  })
}
