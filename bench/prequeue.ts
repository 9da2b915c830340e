/**
 * `npm run bench:prequeue` (node bench/prequeue.ts): what the fair start (issue 19) costs and saves, on the
 * machine's Redis (its own key prefix) and Postgres (its own schema), the service in this process with its
 * workers (pre-queue mover, stream writers). Prints a Markdown report:
 * - time from the start until every pre-queued request is decided (`--sizes`, default 10,000 and 100,000),
 *   the crowd pre-queued through the service's own admission script (the HTTP hop is the next figure's);
 * - the HTTP request rate around the start for the same crowd (`--crowd`) without a pre-queue (clients
 *   retrying every `--retry-ms` until admitted, as today) and with one (one request each, then one status
 *   read after its pollAfterMs);
 * - the CPU cost of signing one receipt, 64 asked for per event-loop turn (µs).
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import { signUserToken } from '../src/auth/tokens.ts'
import { loadConfig } from '../src/config/config.ts'
import { buildApp } from '../src/http/app.ts'
import { CouponStates } from '../src/issuance/core/coupon-state.ts'
import { scheduleOf } from '../src/issuance/core/rebuild.ts'
import { ReceiptSigner } from '../src/issuance/fairness/receipts.ts'
import { channels } from '../src/redis/keys.ts'
import { migrate } from '../src/storage/migrate.ts'
import { createPool, ensureDatabase } from '../src/storage/postgres.ts'
import { integerOption, parseCommandLine, runMain, stringOption } from './lib/cli.ts'
import { dropSchema } from './lib/probes.ts'

const OPTIONS = {
  sizes: { type: 'string' },
  crowd: { type: 'string' },
  'retry-ms': { type: 'string' },
  help: { type: 'boolean' },
} as const
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-01'
const ADMIN_TOKEN = 'bench-admin-token-0123456789'

interface Bench {
  app: FastifyInstance
  baseUrl: string
  states: CouponStates
  agent: Agent
  databaseUrl: string
  schema: string
}

/** Deletes the run's Redis keys (its own prefix). */
async function removeKeys(bench: Bench): Promise<void> {
  const { redis, redisPrefix } = bench.app.issuanceContext
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1_000)
    for (const key of keys) await redis.unlink(key)
    cursor = next
  } while (cursor !== '0')
}

async function startService(): Promise<Bench> {
  const id = randomBytes(4).toString('hex')
  const config = loadConfig({
    ...process.env,
    DATABASE_SCHEMA: `bench_prequeue_${id}`,
    REDIS_PREFIX: `bench:prequeue:${id}:`,
    JWT_SECRET,
    ADMIN_TOKEN,
    RATE_LIMIT_PER_USER: '1000000',
    ADDRESS_LIMIT_PER_WINDOW: '100000000',
    STATUS_LIMIT_PER_USER: '1000000',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
  })
  await ensureDatabase(config.databaseUrl)
  const db = createPool({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, max: 2 })
  await migrate(db, config.databaseSchema)
  await db.end()
  const app = await buildApp({ config, runWorkers: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    app,
    baseUrl: `http://127.0.0.1:${port}`,
    states: new CouponStates(app.issuanceContext),
    agent: new Agent({ connections: 128, keepAliveTimeout: 10_000 }),
    databaseUrl: config.databaseUrl,
    schema: config.databaseSchema,
  }
}

async function call(bench: Bench, method: string, path: string, token: string, body?: unknown) {
  const response = await request(`${bench.baseUrl}${path}`, {
    method: method as 'GET',
    dispatcher: bench.agent,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.body.text()
  return { status: response.statusCode, body: JSON.parse(text) as Record<string, unknown> }
}

async function createSale(bench: Bench, quantity: number, startsInMs: number, prequeue: boolean) {
  const now = Date.now()
  const created = await call(bench, 'POST', '/admin/coupons', ADMIN_TOKEN, {
    name: 'Pre-queue bench',
    discount: { type: 'FIXED', amount: 100 },
    quantity,
    issueMode: 'stream',
    issueStartsAt: new Date(now + startsInMs).toISOString(),
    issueEndsAt: new Date(now + 3_600_000).toISOString(),
    validDays: 1,
    ...(prequeue ? { prequeueStartsAt: new Date(now - 1_000).toISOString(), prequeueOrder: 'shuffle' } : {}),
  })
  if (created.status !== 201) throw new Error(`creating the sale failed: ${JSON.stringify(created.body)}`)
  return Number(created.body.id)
}

/** Moves the sale's start to `startsAt` in Postgres and Redis and tells every process (as an admin PATCH would). */
async function moveStart(bench: Bench, couponId: number, startsAt: number): Promise<void> {
  const ctx = bench.app.issuanceContext
  await ctx.db.query('UPDATE coupons SET issue_starts_at = $2 WHERE id = $1', [couponId, new Date(startsAt)])
  bench.app.issuance.forget(couponId)
  const coupon = await bench.app.issuance.get(couponId)
  await bench.states.of(couponId).setSchedule(scheduleOf(coupon))
  await ctx.redis.publish(channels(ctx.redisPrefix).couponChanged, String(couponId))
}

/** Pre-queues `size` users, then starts the sale and times the move and the decisions. */
async function timeToDecide(bench: Bench, size: number): Promise<string> {
  const couponId = await createSale(bench, size, 600_000, true)
  const state = bench.states.of(couponId)
  const batch = 2_000
  for (let from = 0; from < size; from += batch) {
    const users = Array.from({ length: Math.min(batch, size - from) }, (_, i) => `q${from + i}`)
    await Promise.all(users.map((userId) => state.admitToStream(userId)))
  }
  const startsAt = Date.now() + 1_000
  await moveStart(bench, couponId, startsAt)
  let movedAt: number | undefined
  const db = bench.app.issuanceContext.db
  for (;;) {
    if (movedAt === undefined && (await state.prequeueLength()) === 0) movedAt = Date.now()
    const { rows } = await db.query<{ issued_count: number }>(
      'SELECT issued_count FROM coupons WHERE id = $1',
      [couponId],
    )
    if (rows[0]!.issued_count >= size) break
    await sleep(20)
  }
  const decided = Date.now() - startsAt
  const moved = (movedAt ?? Date.now()) - startsAt
  return `| ${size.toLocaleString('en-US')} | ${(moved / 1000).toFixed(2)} s | ${(decided / 1000).toFixed(2)} s | ${Math.round(size / (decided / 1000)).toLocaleString('en-US')} /s |`
}

/** One client: today's retry loop, or one pre-queue request then one status read at its pollAfterMs. */
async function client(
  bench: Bench,
  couponId: number,
  userId: string,
  prequeue: boolean,
  retryMs: number,
  stamps: number[],
) {
  const token = signUserToken(JWT_SECRET, userId)
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    stamps.push(Date.now())
    const answer = await call(bench, 'POST', `/coupons/${couponId}/issuance`, token)
    if (answer.status !== 422) {
      if (!prequeue) return
      await sleep(
        Number(answer.body.startsAt ? Date.parse(String(answer.body.startsAt)) - Date.now() : 0) + 250,
      )
      stamps.push(Date.now())
      const status = await call(bench, 'GET', `/coupons/${couponId}/issuance`, token)
      await sleep(Number(status.body.pollAfterMs ?? 0))
      return
    }
    await sleep(retryMs)
  }
}

/** Requests per second in the second before and after the start, for the same crowd. */
async function requestRate(bench: Bench, crowd: number, prequeue: boolean, retryMs: number): Promise<string> {
  const startsIn = 3_000
  const couponId = await createSale(bench, crowd, startsIn, prequeue)
  const startsAt = Date.now() + startsIn
  await sleep(startsIn - 2_000)
  const stamps: number[] = []
  await Promise.all(
    Array.from({ length: crowd }, (_, i) =>
      client(bench, couponId, `${prequeue ? 'p' : 'r'}${couponId}-${i}`, prequeue, retryMs, stamps),
    ),
  )
  const inWindow = (from: number, to: number) =>
    stamps.filter((t) => t >= startsAt + from && t < startsAt + to).length
  const label = prequeue ? 'with a pre-queue' : `without (retry every ${retryMs} ms)`
  return `| ${label} | ${stamps.length.toLocaleString('en-US')} | ${inWindow(-1_000, 0).toLocaleString('en-US')} /s | ${inWindow(0, 1_000).toLocaleString('en-US')} /s |`
}

/** CPU of one receipt when `perTurn` are asked for in one event-loop turn (one signature per turn). */
async function signingCost(perTurn = 64): Promise<string> {
  const signer = new ReceiptSigner(undefined)
  const issuance = {
    couponId: 1,
    userId: 'user-1',
    status: 'ACCEPTED' as const,
    position: 1,
    requestedAt: new Date().toISOString(),
  }
  const turn = (from: number) =>
    Promise.all(Array.from({ length: perTurn }, (_, i) => signer.sign({ ...issuance, position: from + i })))
  for (let i = 0; i < 2_000; i += perTurn) await turn(i)
  const rounds = 20_000
  const started = process.cpuUsage()
  for (let i = 0; i < rounds; i += perTurn) await turn(i)
  const used = process.cpuUsage(started)
  const micros = (used.user + used.system) / rounds
  return `Signing one receipt (${perTurn} per event-loop turn under one Ed25519 signature of their Merkle root, node:crypto): ${micros.toFixed(1)} µs CPU per request (mean of ${rounds.toLocaleString('en-US')}).`
}

runMain('bench:prequeue', async () => {
  const values = parseCommandLine(process.argv.slice(2), OPTIONS)
  if (values.help)
    return console.log(
      'usage: npm run bench:prequeue -- [--sizes 10000,100000] [--crowd 500] [--retry-ms 100]',
    )
  const sizes = (stringOption(values, 'sizes') ?? '10000,100000').split(',').map(Number)
  const crowd = integerOption(values, 'crowd', 500, 1, 100_000)
  const retryMs = integerOption(values, 'retry-ms', 100, 1, 60_000)
  const bench = await startService()
  try {
    console.log(
      '## Pre-queue (issue 19)\n\n| pre-queued | start → all moved | start → all decided (rows) | rate |\n| --- | --- | --- | --- |',
    )
    for (const size of sizes) console.log(await timeToDecide(bench, size))
    console.log(
      `\n| crowd of ${crowd} | requests | in the second before the start | in the second after |\n| --- | --- | --- | --- |`,
    )
    console.log(await requestRate(bench, crowd, false, retryMs))
    console.log(await requestRate(bench, crowd, true, retryMs))
    console.log(`\n${await signingCost()}`)
  } finally {
    await removeKeys(bench)
    await bench.app.close()
    await bench.agent.close()
    await dropSchema(bench.databaseUrl, bench.schema)
  }
})
