/**
 * `node bench/retention.ts`: what a season of sales costs Redis and what it gives back (issue 18). Runs
 * `--sales` sales of `--users` users each (`--quantity` units), spread over `--modes`, in one process
 * (the app and its workers) on a Redis of the run's own; after each mode's sales end and drain, measures what Redis holds for
 * them (MEMORY USAGE of their keys, and the used_memory delta), releases them (the production SaleReleaser,
 * as SALE_RELEASE_AFTER_MS would), and measures how much of it came back. Requests go through the issuance
 * service in process (the route's own call, without HTTP), so the run measures memory, not request
 * throughput. Prints a Markdown table.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { loadConfig } from '../src/config/config.ts'
import { ISSUE_MODES, type IssueMode } from '../src/domain/coupon.ts'
import { buildApp } from '../src/http/app.ts'
import { CouponStates } from '../src/issuance/core/coupon-state.ts'
import type { IssuanceWorker } from '../src/issuance/core/mode.ts'
import { kafkaWorkers } from '../src/issuance/kafka/kafka-mode.ts'
import { SaleReleaser } from '../src/issuance/plumbing/sale-release.ts'
import { queueScheduler } from '../src/issuance/queue/queue-mode.ts'
import { streamWriters } from '../src/issuance/stream/stream-mode.ts'
import { migrate } from '../src/storage/migrate.ts'
import { createPool, ensureDatabase, quoteIdent } from '../src/storage/postgres.ts'
import { integerOption, parseCommandLine, runMain, stringOption, UsageError } from './lib/cli.ts'
import { startOwnRedis } from './lib/redis-server.ts'

const OPTIONS = {
  sales: { type: 'string' },
  users: { type: 'string' },
  quantity: { type: 'string' },
  modes: { type: 'string' },
  concurrency: { type: 'string' },
  help: { type: 'boolean' },
} as const

const USAGE = `usage: node bench/retention.ts [options]
  --sales N        sales in all, spread evenly over the modes (default 100)
  --users N        users requesting each sale, one request each (default 20000)
  --quantity N     units per sale (default 1000)
  --modes LIST     comma-separated issue modes (default stream,queue,sync; kafka needs KAFKA_BROKERS)
  --concurrency N  requests in flight per sale (default 64)`

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/coupon_rush_bench'

interface Plan {
  salesPerMode: number
  users: number
  quantity: number
  modes: IssueMode[]
  concurrency: number
}

interface ModeFigures {
  mode: IssueMode
  sales: number
  /** MEMORY USAGE of every key of one sale, averaged over the mode's sales. */
  keyBytesPerSale: number
  /** Users holding a record in Redis (a request it answered other than refused at once), per sale. */
  recordsPerSale: number
  /** used_memory growth while the mode's sales were held. */
  heldBytes: number
  /** used_memory left above the level before the mode's sales, once they were released. */
  leftBytes: number
  releaseMs: number
}

function planOf(argv: string[]): Plan | undefined {
  const values = parseCommandLine(argv, OPTIONS)
  if (values.help === true) return undefined
  const modes = (stringOption(values, 'modes') ?? 'stream,queue,sync').split(',').map((mode) => mode.trim())
  const known = (mode: string): mode is IssueMode => (ISSUE_MODES as readonly string[]).includes(mode)
  const unknown = modes.filter((mode) => !known(mode))
  if (unknown.length > 0) throw new UsageError(`unknown mode ${unknown.join(', ')}`)
  const sales = integerOption(values, 'sales', 100, 1, 10_000)
  return {
    salesPerMode: Math.max(1, Math.round(sales / modes.length)),
    users: integerOption(values, 'users', 20_000, 1, 10_000_000),
    quantity: integerOption(values, 'quantity', 1_000, 1, 10_000_000),
    modes: modes.filter(known),
    concurrency: integerOption(values, 'concurrency', 64, 1, 10_000),
  }
}

async function usedMemory(redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1])
}

/** MEMORY USAGE (exact: SAMPLES 0) of every key of the coupon. */
async function couponKeyBytes(redis: Redis, prefix: string, couponId: number): Promise<number> {
  let bytes = 0
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}{c:${couponId}}:*`, 'COUNT', 100)
    for (const key of keys) bytes += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'))
    cursor = next
  } while (cursor !== '0')
  return bytes
}

/** Opens one sale, sends its users' requests through the service and ends it; returns its id. */
async function runSale(app: FastifyInstance, plan: Plan, mode: IssueMode, label: string): Promise<number> {
  const created = await app.issuance.createCoupon({
    name: label,
    discount: { type: 'FIXED', amount: 100 },
    quantity: plan.quantity,
    issueStartsAt: new Date(Date.now() - 1_000),
    issueEndsAt: new Date(Date.now() + 3_600_000),
    validDays: 7,
    validUntil: null,
    issueMode: mode,
  })
  let next = 0
  await Promise.all(
    Array.from({ length: plan.concurrency }, async () => {
      while (next < plan.users) await app.issuance.request(created, `${label}-u${next++}`)
    }),
  )
  await app.db.query('UPDATE coupons SET issue_ends_at = now() WHERE id = $1', [created.id])
  app.issuance.forget(created.id)
  return created.id
}

/** Waits until every request of the sales is decided and in Postgres. */
async function drain(app: FastifyInstance, ids: number[]): Promise<void> {
  const states = new CouponStates(app.issuanceContext)
  for (;;) {
    let left = 0
    for (const id of ids) {
      const { pending } = await app.issuance.stats(await app.issuance.get(id))
      left += pending + (await states.of(id).backlog())
    }
    if (left === 0) return
    await sleep(200)
  }
}

/**
 * One small sale per mode, released: loads the scripts and opens the workers' connections, so what those
 * cost once is not counted as the first mode's sales.
 */
async function warmUp(app: FastifyInstance, plan: Plan): Promise<void> {
  const small = { ...plan, users: 100, quantity: 10 }
  const ids = await Promise.all(plan.modes.map((mode) => runSale(app, small, mode, `warm-${mode}`)))
  await drain(app, ids)
  await new SaleReleaser(app.issuanceContext, { afterMs: 0, announceMs: 0 }).releaseDue()
  await sleep(1_000)
}

async function measureMode(app: FastifyInstance, observer: Redis, plan: Plan, mode: IssueMode) {
  const before = await usedMemory(observer)
  const ids: number[] = []
  for (let sale = 0; sale < plan.salesPerMode; sale++) {
    ids.push(await runSale(app, plan, mode, `${mode}-${sale}`))
  }
  await drain(app, ids)
  let keyBytes = 0
  let records = 0
  const states = new CouponStates(app.issuanceContext)
  for (const id of ids) {
    keyBytes += await couponKeyBytes(observer, app.issuanceContext.redisPrefix, id)
    records += await states.of(id).recordCount()
  }
  const heldBytes = (await usedMemory(observer)) - before
  const started = Date.now()
  await new SaleReleaser(app.issuanceContext, { afterMs: 0, announceMs: 0 }).releaseDue()
  const releaseMs = Date.now() - started
  // UNLINK frees big values on a background thread: give it a moment.
  await sleep(500)
  const figures: ModeFigures = {
    mode,
    sales: ids.length,
    keyBytesPerSale: Math.round(keyBytes / ids.length),
    recordsPerSale: Math.round(records / ids.length),
    heldBytes,
    leftBytes: (await usedMemory(observer)) - before,
    releaseMs,
  }
  return figures
}

/**
 * The serve process's workers, with Kafka topics and a consumer group of the run's own (the defaults are
 * shared by every process on the broker: another's writers could take this run's requests).
 */
async function startWorkers(app: FastifyInstance, schema: string): Promise<IssuanceWorker[]> {
  const ctx = app.issuanceContext
  const brokers = app.issuance.availableModes().includes('kafka') ? process.env.KAFKA_BROKERS : undefined
  const workers = [
    streamWriters(ctx),
    queueScheduler(ctx, { cron: '* * * * * *' }),
    ...(brokers === undefined
      ? []
      : kafkaWorkers(ctx, {
          brokers: brokers.split(','),
          topicPrefix: `${schema}.`,
          groupId: `${schema}-writers`,
        })),
  ]
  for (const worker of workers) await worker.start()
  return workers
}

function report(plan: Plan, rows: ModeFigures[]): string {
  const lines = [
    `${plan.salesPerMode} sales per mode of ${plan.users} users each for ${plan.quantity} units (one request per user).`,
    '',
    '| mode | sales | Redis bytes per sale (MEMORY USAGE) | users with a record | bytes per record | per user | used_memory held (per user) | left after release | release time |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const row of rows) {
    const perUser = (row.keyBytesPerSale / plan.users).toFixed(1)
    const perRecord = (row.keyBytesPerSale / Math.max(row.recordsPerSale, 1)).toFixed(1)
    const heldPerUser = (row.heldBytes / (row.sales * plan.users)).toFixed(1)
    lines.push(
      `| ${row.mode} | ${row.sales} | ${row.keyBytesPerSale} | ${row.recordsPerSale} | ${perRecord} | ${perUser} | ${row.heldBytes} (${heldPerUser}) | ${row.leftBytes} | ${row.releaseMs} ms |`,
    )
  }
  return lines.join('\n')
}

async function main(): Promise<void> {
  const plan = planOf(process.argv.slice(2))
  if (plan === undefined) return console.log(USAGE)
  const redis = await startOwnRedis({ persistence: 'none' })
  const schema = `bench_retention_${randomBytes(4).toString('hex')}`
  await ensureDatabase(DATABASE_URL)
  const db = createPool({ databaseUrl: DATABASE_URL, schema })
  await migrate(db, schema)
  const config = loadConfig({
    DATABASE_URL,
    DATABASE_SCHEMA: schema,
    REDIS_URL: redis.url,
    LOG_LEVEL: 'warn',
    ...(process.env.KAFKA_BROKERS === undefined ? {} : { KAFKA_BROKERS: process.env.KAFKA_BROKERS }),
  })
  const app = await buildApp({ config, runWorkers: false })
  await app.ready()
  const workers = await startWorkers(app, schema)
  const observer = new Redis(redis.url)
  try {
    await warmUp(app, plan)
    const rows: ModeFigures[] = []
    for (const mode of plan.modes) rows.push(await measureMode(app, observer, plan, mode))
    console.log(report(plan, rows))
  } finally {
    observer.disconnect()
    await Promise.all(workers.map((worker) => worker.stop()))
    await app.close()
    await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)
    await db.end()
    await redis.destroy()
  }
}

runMain('bench/retention.ts', main)
