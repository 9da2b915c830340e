/**
 * `npm run demo`: one flash sale, live in the terminal. Starts the service (or uses one already running),
 * creates a coupon, lets thousands of users press the button within a few seconds over HTTP keep-alive,
 * shows the progress as it happens and ends with the checks: nothing over-issued, nobody twice, the
 * coupons went to the first users in the order the crowd saw, and how fast they were in Postgres. The crowd
 * is the benchmark's load generator (bench/lib/load-child.ts). See `npm run demo -- --help`.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { AdminClient, ALL_MODES, type IssueMode, ModeUnavailableError } from '../bench/lib/admin.ts'
import {
  integerOption,
  numberOption,
  parseCommandLine,
  runMain,
  stringOption,
  UsageError,
} from '../bench/lib/cli.ts'
import { type ChildService, freePort, kafkaBroker, startServer } from '../bench/lib/infra.ts'
import { LoadRun, type Progress, warmUp } from '../bench/lib/load.ts'
import { type LoadResult, nowMs } from '../bench/lib/load-protocol.ts'
import { type Audit, auditCoupon, BenchDb, BenchRedis, dropSchema } from '../bench/lib/probes.ts'
import { loadConfig } from '../src/config/config.ts'

const HELP = `usage: npm run demo -- [options]

Simulates a flash sale against Coupon Rush and shows it live: a coupon, many users pressing the button
within a few seconds (some twice), answers as they come, coupons landing in Postgres, then a summary
with the correctness checks (over-issue, duplicates, FCFS against Postgres, positions in the order the
crowd saw its answers) and latency percentiles.

By default it starts its own server (a child process on a free port, with its own Postgres schema and
Redis key prefix on DATABASE_URL / REDIS_URL, both removed at the end). Redis and Postgres must be up
(bash scripts/services.sh); the kafka mode needs a broker (npm run kafka:start).

options
  --users N           users in the sale (default 20000)
  --quantity N        coupons to give away (default 1000)
  --mode M            sync | queue | stream | kafka (default stream)
  --connections N     keep-alive connections of the simulated crowd (default 64)
  --rate N            arrivals per second (default 4000; 0 = as fast as the connections allow)
  --repeat F          fraction of users pressing twice (default 0.05)
  --url URL           use a server already running instead of starting one (needs --admin-token and
                      --jwt-secret; the FCFS check then reads DATABASE_URL / DATABASE_SCHEMA, or
                      --database-url / --schema)
  --admin-token T     the running server's ADMIN_TOKEN
  --jwt-secret S      the running server's JWT_SECRET (to sign the users' tokens)
  --database-url URL  Postgres of the running server (default DATABASE_URL)
  --schema NAME       its schema (default DATABASE_SCHEMA or public)
  --keep              keep the started server running, and its schema and keys, after the demo
  --help              this text`

interface Options {
  users: number
  quantity: number
  mode: IssueMode
  connections: number
  rate: number
  repeat: number
  url?: string
  adminToken?: string
  jwtSecret?: string
  databaseUrl: string
  redisUrl: string
  schema: string
  keep: boolean
}

function parseOptions(argv: string[]): Options | undefined {
  const values = parseCommandLine(argv, {
    users: { type: 'string' },
    quantity: { type: 'string' },
    mode: { type: 'string' },
    connections: { type: 'string' },
    rate: { type: 'string' },
    repeat: { type: 'string' },
    url: { type: 'string' },
    'admin-token': { type: 'string' },
    'jwt-secret': { type: 'string' },
    'database-url': { type: 'string' },
    schema: { type: 'string' },
    keep: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    console.log(HELP)
    return undefined
  }
  const mode = (stringOption(values, 'mode') ?? 'stream') as IssueMode
  if (!ALL_MODES.includes(mode))
    throw new UsageError(`--mode must be one of ${ALL_MODES.join(', ')}, got "${mode}"`)
  const url = stringOption(values, 'url')
  const adminToken = stringOption(values, 'admin-token')
  const jwtSecret = stringOption(values, 'jwt-secret')
  if (url !== undefined) {
    if (!/^https?:\/\/[^/]+\/?$/.test(url))
      throw new UsageError(`--url must be the server's base URL like http://127.0.0.1:3000, got "${url}"`)
    if (adminToken === undefined || jwtSecret === undefined)
      throw new UsageError('--url needs --admin-token and --jwt-secret of that server')
  } else if (adminToken !== undefined || jwtSecret !== undefined) {
    throw new UsageError('--admin-token and --jwt-secret go with --url (the demo makes its own otherwise)')
  }
  // REDIS_URL, DATABASE_URL and DATABASE_SCHEMA as the service reads them, with its defaults.
  const config = loadConfig(process.env)
  const databaseUrl = stringOption(values, 'database-url') ?? config.databaseUrl
  if (!/^postgres(ql)?:\/\//.test(databaseUrl))
    throw new UsageError(`--database-url must be a postgres:// URL, got "${databaseUrl}"`)
  const users = integerOption(values, 'users', 20_000, 1, 2_000_000)
  const connections = integerOption(values, 'connections', 64, 1, 4_096)
  return {
    users,
    quantity: integerOption(values, 'quantity', 1_000, 1, 10_000_000),
    mode,
    connections,
    rate: integerOption(values, 'rate', 4_000, 0, 1_000_000),
    repeat: numberOption(values, 'repeat', 0.05, 0, 1),
    url: url?.replace(/\/$/, ''),
    adminToken,
    jwtSecret,
    databaseUrl,
    redisUrl: config.redisUrl,
    schema: stringOption(values, 'schema') ?? config.databaseSchema,
    keep: values.keep === true,
  }
}

const n0 = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: 0 })
const n1 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 })
const n2 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 2, minimumFractionDigits: 2 })

function bar(fraction: number, width = 24): string {
  const filled = Math.round(Math.min(Math.max(fraction, 0), 1) * width)
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`
}

/** Live counters of the sale: the load generator's progress and the stats poller's issued count. */
interface Live {
  planned: number
  progress: Progress
  issued: number
  expectedIssued: number
  startedAt: number
  rateWindow: [number, number][]
}

function answered(progress: Progress): number {
  return progress.completed + progress.errors
}

/** 2xx, 410, 409 and any other status among the answers so far. */
function answerCounts(progress: Progress): {
  accepted: number
  soldOut: number
  duplicates: number
  other: number
} {
  const counts = { accepted: 0, soldOut: 0, duplicates: 0, other: 0 }
  for (const [code, count] of Object.entries(progress.statusCounts)) {
    if (code.startsWith('2')) counts.accepted += count
    else if (code === '410') counts.soldOut += count
    else if (code === '409') counts.duplicates += count
    else counts.other += count
  }
  return counts
}

/** A block of lines redrawn in place on a terminal; elsewhere one line per second. */
class Screen {
  private drawn = 0
  private lastPlain = 0
  private readonly tty = process.stdout.isTTY === true

  draw(lines: string[]): void {
    if (!this.tty) {
      if (Date.now() - this.lastPlain < 1_000) return
      this.lastPlain = Date.now()
      console.log(lines.slice(1, 3).join('  |  ').replace(/\s+/g, ' '))
      return
    }
    let out = this.drawn > 0 ? `\x1b[${this.drawn}A` : ''
    for (const line of lines) out += `\r\x1b[2K${line}\n`
    process.stdout.write(out)
    this.drawn = lines.length
  }

  /** The last frame stays on screen; the next output starts below it. */
  done(lines: string[]): void {
    if (!this.tty) console.log(lines.slice(1, 3).join('  |  ').replace(/\s+/g, ' '))
    else this.draw(lines)
    this.drawn = 0
  }
}

/** What a 2xx means in each mode. */
function acceptedLabel(mode: IssueMode): string {
  return mode === 'sync' ? 'issued (201)' : mode === 'queue' ? 'queued (202 PENDING)' : 'accepted (202)'
}

function frame(live: Live, title: string, mode: IssueMode): string[] {
  const elapsed = (nowMs() - live.startedAt) / 1000
  const now = nowMs()
  const done = answered(live.progress)
  while (live.rateWindow.length > 1 && now - live.rateWindow[0]![0] > 1_000) live.rateWindow.shift()
  const first = live.rateWindow[0]
  const rate = first && now - first[0] > 50 ? ((done - first[1]) * 1000) / (now - first[0]) : 0
  const issuedFraction = live.expectedIssued > 0 ? live.issued / live.expectedIssued : 0
  const counts = answerCounts(live.progress)
  const errors = live.progress.errors
  return [
    title,
    `  requests  [${bar(done / live.planned)}] ${String(Math.floor((done / live.planned) * 100)).padStart(3)}%  ` +
      `sent ${n0(live.progress.sent)} / ${n0(live.planned)}   answered ${n0(done)}   ${n0(rate)} req/s`,
    `  answers   ${acceptedLabel(mode)} ${n0(counts.accepted)}   sold out ${n0(counts.soldOut)}   duplicates (409) ${n0(counts.duplicates)}` +
      `${counts.other > 0 ? `   other ${n0(counts.other)}` : ''}${errors > 0 ? `   errors ${n0(errors)}` : ''}`,
    `  Postgres  [${bar(issuedFraction)}] issued ${n0(live.issued)}${live.expectedIssued > 0 ? ` / ${n0(live.expectedIssued)}` : ''}`,
    `  elapsed   ${n1(elapsed)} s`,
  ]
}

/** The server the crowd hits: ours (started here, removed at the end) or one already running (--url). */
interface Target {
  own: boolean
  server?: ChildService
  baseUrl: string
  adminToken: string
  jwtSecret: string
  databaseUrl: string
  schema: string
  redisUrl: string
  redisPrefix: string
}

/** Starts our own server on a free port, with a fresh schema, key prefix, admin token and JWT secret. */
async function startOwnServer(target: Target, mode: IssueMode, hex: string): Promise<void> {
  const port = await freePort()
  target.adminToken = randomBytes(18).toString('base64url')
  target.jwtSecret = randomBytes(32).toString('base64url')
  target.schema = `demo_${hex}`
  let kafkaBrokers: string | undefined
  if (mode === 'kafka') {
    kafkaBrokers = process.env.KAFKA_BROKERS ?? kafkaBroker()
    if (kafkaBrokers === undefined)
      throw new Error('the kafka mode needs a Kafka broker: start one with `npm run kafka:start`')
  }
  const logDir = mkdtempSync(join(tmpdir(), 'coupon-rush-demo-'))
  process.stdout.write(
    `starting the server on port ${port} (schema ${target.schema}, log ${logDir}/server.log)… `,
  )
  target.server = await startServer(
    {
      port,
      redisUrl: target.redisUrl,
      databaseUrl: target.databaseUrl,
      schema: target.schema,
      redisPrefix: target.redisPrefix,
      jwtSecret: target.jwtSecret,
      adminToken: target.adminToken,
      kafkaBrokers,
      extra: { RATE_LIMIT_PER_USER: '20' },
    },
    join(logDir, 'server.log'),
  )
  target.baseUrl = `http://127.0.0.1:${port}`
  console.log('up')
}

/** Stops our server and removes its schema and keys, or with --keep leaves them and says where they are. */
async function cleanUp(target: Target, keep: boolean): Promise<void> {
  if (!target.own) return
  const { server } = target
  if (keep && server?.running) {
    server.process.unref()
    console.log(
      `\nkept: the server runs on ${target.baseUrl} (pid ${server.pid}; stop it with \`kill ${server.pid}\`), ` +
        `ADMIN_TOKEN=${target.adminToken} JWT_SECRET=${target.jwtSecret}; schema ${target.schema} in ${target.databaseUrl}, Redis keys ${target.redisPrefix}*; log ${server.logFile}`,
    )
    return
  }
  await server?.stop()
  if (keep) return
  await dropSchema(target.databaseUrl, target.schema).catch(() => {})
  const redis = new BenchRedis(target.redisUrl)
  await redis.deleteByPrefix(target.redisPrefix).catch(() => 0)
  await redis.close()
}

async function createSaleCoupon(admin: AdminClient, options: Options): Promise<number> {
  try {
    return await admin.createCoupon(options.mode, options.quantity, `Flash sale demo (${options.mode})`)
  } catch (error) {
    if (error instanceof ModeUnavailableError)
      throw new Error(
        `the server does not offer the ${options.mode} mode (422 MODE_UNAVAILABLE: ${error.message})`,
      )
    throw error
  }
}

/** The sale as it ended: the crowd's answers, and when the last coupon was seen in Postgres. */
interface SaleOutcome {
  result: LoadResult
  live: Live
  allIssued: boolean
  /** When the stats poll last saw the issued count change, if every coupon made it to Postgres. */
  lastRowAt: number | undefined
}

/** Signs the crowd's tokens, then runs the sale with the live screen until every admitted user has a row. */
async function runSale(
  target: Target,
  admin: AdminClient,
  couponId: number,
  options: Options,
  hex: string,
): Promise<SaleOutcome> {
  process.stdout.write(`signing ${n0(options.users)} user tokens… `)
  const live: Live = {
    planned: 0,
    progress: { sent: 0, completed: 0, errors: 0, statusCounts: {} },
    issued: 0,
    expectedIssued: Math.min(options.quantity, options.users),
    startedAt: nowMs(),
    rateWindow: [],
  }
  const open = options.rate > 0
  const crowd = await LoadRun.prepare(
    {
      kind: open ? 'open' : 'closed',
      baseUrl: target.baseUrl,
      path: `/coupons/${couponId}/issuance`,
      jwtSecret: target.jwtSecret,
      userPrefix: `demo-${hex}-`,
      users: options.users,
      repeatRatio: options.repeat,
      seed: Date.now() & 0x7fffffff,
      connections: options.connections,
      durationSec: 3_600,
      rate: options.rate,
      collectAccepted: true,
      progressMs: 100,
    },
    (progress) => {
      live.progress = progress
    },
  )
  live.planned = crowd.planned
  console.log('done\n')
  const title =
    `Flash sale: coupon #${couponId} (${options.mode}), ${n0(options.quantity)} coupons, ${n0(options.users)} users ` +
    `(${n0(crowd.planned - options.users)} press twice) ${open ? `arriving at ${n0(options.rate)}/s` : `as fast as ${options.connections} connections go`}`
  const screen = new Screen()
  const poll = pollIssued(admin, couponId, live)
  const painter = setInterval(() => {
    live.rateWindow.push([nowMs(), answered(live.progress)])
    screen.draw(frame(live, title, options.mode))
  }, 100)

  live.startedAt = nowMs()
  const result = await crowd.go()
  live.progress = result
  // Every admitted user must end with a row (queue: the first `quantity` of them).
  const admitted = new Set(result.accepted.users).size
  live.expectedIssued = options.mode === 'queue' ? Math.min(options.quantity, admitted) : admitted
  const deadline = Date.now() + 60_000
  while (live.issued < live.expectedIssued && Date.now() < deadline) await sleep(50)
  const lastIssuedChangeAt = await poll.stop()
  clearInterval(painter)
  screen.done(frame(live, title, options.mode))
  const allIssued = live.issued >= live.expectedIssued
  return { result, live, allIssued, lastRowAt: allIssued ? lastIssuedChangeAt : undefined }
}

/** Polls the coupon's issued count every 100 ms into `live`; `stop` returns when it last changed. */
function pollIssued(
  admin: AdminClient,
  couponId: number,
  live: Live,
): { stop: () => Promise<number | undefined> } {
  let polling = true
  let lastIssuedChangeAt: number | undefined
  const poller = (async () => {
    while (polling) {
      try {
        const stats = await admin.stats(couponId)
        if (stats.issued !== live.issued) lastIssuedChangeAt = nowMs()
        live.issued = stats.issued
      } catch {}
      await sleep(100)
    }
  })()
  return {
    stop: async () => {
      polling = false
      await poller
      return lastIssuedChangeAt
    },
  }
}

const ok = (value: boolean) => (value ? '✔' : '✘')

/** The requests and the answers they got. */
function answerLines(result: LoadResult, mode: IssueMode): string[] {
  const counts = answerCounts(result)
  return [
    `  requests   ${n0(result.sent)} sent, ${n0(answered(result))} answered in ${n2((result.lastResponseAtMs - result.firstSendAtMs) / 1000)} s ` +
      `(${n0(result.rps)} req/s)${result.errors > 0 ? `, ${n0(result.errors)} failed` : ''}`,
    `  answers    ${acceptedLabel(mode)} ${n0(counts.accepted)}   sold out ${n0(counts.soldOut)}   duplicates refused (409) ${n0(counts.duplicates)}` +
      (counts.other > 0
        ? `   other ${Object.entries(result.statusCounts)
            .filter(([code]) => !['201', '202', '409', '410'].includes(code))
            .map(([code, count]) => `${code}×${count}`)
            .join(' ')}`
        : ''),
  ]
}

/** The correctness checks read from Postgres: over-issue, duplicates, FCFS, arrival order. */
function auditLines(audit: Audit, mode: IssueMode): string[] {
  const lines = [
    `  issued     ${n0(audit.rows)} coupons in Postgres   ${ok(audit.overIssued === 0)} over-issue ${audit.overIssued}   ` +
      `${ok(audit.duplicateRows + audit.doubleAccepted === 0)} duplicates ${audit.duplicateRows + audit.doubleAccepted}`,
  ]
  const who = mode === 'queue' ? 'the first by position among the queued' : 'the accepted users'
  lines.push(
    `  FCFS       ${ok(audit.fcfs)} issued users == ${who} (${n0(audit.rows)})` +
      (audit.positionsExact === undefined
        ? ''
        : `   ${ok(audit.positionsExact)} positions exactly 1..${n0(audit.rows)} as answered`) +
      (audit.soldOutWithRow > 0 ? `   ✘ ${audit.soldOutWithRow} sold-out users hold a row` : ''),
  )
  const order = audit.arrivalOrder
  if (order && order.checked > 0)
    lines.push(
      `  order      ${ok(order.violations === 0)} every request answered before another was sent holds the smaller position ` +
        `(${n0(order.checked)} requests checked; ${n0(order.violations)} out of order)`,
    )
  for (const problem of audit.problems) lines.push(`             ✘ ${problem}`)
  return lines
}

/** Answer latency, when the last coupon reached Postgres, and request-to-row latency. */
function timingLines(sale: SaleOutcome, audit: Audit | undefined, open: boolean): string[] {
  const { result, live, lastRowAt } = sale
  const lines = [
    `  latency    p50 ${n1(result.latency.p50)} ms   p99 ${n1(result.latency.p99)} ms   p99.9 ${n1(result.latency.p999)} ms   max ${n1(result.latency.max)} ms` +
      ` (${open ? 'from the scheduled arrival to the answer' : 'from send to answer'})`,
  ]
  if (lastRowAt !== undefined) {
    const afterAnswers = lastRowAt - result.lastResponseAtMs
    const byIssuedAt =
      audit?.lastIssuedAtMs === undefined
        ? ''
        : `; its issued_at says ${n2((audit.lastIssuedAtMs - result.firstSendAtMs) / 1000)} s`
    lines.push(
      `  Postgres   the last coupon was in Postgres ${n2((lastRowAt - result.firstSendAtMs) / 1000)} s after the first request ` +
        `(${afterAnswers > 0 ? `${n2(afterAnswers / 1000)} s after the last answer` : 'before the last answer'}; seen by 100 ms polls${byIssuedAt})`,
    )
  } else {
    lines.push(
      `  Postgres   ✘ only ${n0(live.issued)} of ${n0(live.expectedIssued)} coupons in Postgres after waiting 60 s`,
    )
  }
  if (audit?.requestToRow.count)
    lines.push(
      `  to row     request → row p50 ${n1(audit.requestToRow.p50)} ms   p99 ${n1(audit.requestToRow.p99)} ms (issued_at − the moment the request was sent)`,
    )
  return lines
}

/** Audits the coupon in Postgres and prints the summary; a failed check sets exit status 1. */
async function report(
  target: Target,
  admin: AdminClient,
  couponId: number,
  options: Options,
  sale: SaleOutcome,
): Promise<void> {
  let audit: Audit | undefined
  let auditError: string | undefined
  const db = new BenchDb(target.databaseUrl, target.schema)
  try {
    audit = await auditCoupon(db, couponId, options.quantity, options.mode, sale.result)
  } catch (error) {
    auditError = (error as Error).message
  } finally {
    await db.close()
  }
  const lines: string[] = ['', 'Summary', ...answerLines(sale.result, options.mode)]
  if (audit) lines.push(...auditLines(audit, options.mode))
  else
    lines.push(
      `  checks     could not read Postgres (${auditError}); server audit: ${JSON.stringify(await admin.audit(couponId).catch(() => 'unavailable'))}`,
    )
  lines.push(...timingLines(sale, audit, options.rate > 0))
  console.log(lines.join('\n'))
  const failed = !audit || audit.problems.length > 0 || !sale.allIssued
  if (failed) process.exitCode = 1
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2))
  if (options === undefined) return
  const hex = randomBytes(3).toString('hex')
  const target: Target = {
    own: options.url === undefined,
    baseUrl: options.url ?? '',
    adminToken: options.adminToken ?? '',
    jwtSecret: options.jwtSecret ?? '',
    databaseUrl: options.databaseUrl,
    schema: options.schema,
    redisUrl: options.redisUrl,
    redisPrefix: `demo:${hex}:`,
  }
  let cleaning: Promise<void> | undefined
  const onSignal = () => {
    cleaning ??= cleanUp(target, options.keep).finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    if (target.own) await startOwnServer(target, options.mode, hex)
    const admin = new AdminClient(target.baseUrl, target.adminToken)
    const couponId = await createSaleCoupon(admin, options)
    if (target.own) {
      // A flash sale hits a server that has been running: give the fresh one a second of traffic first.
      process.stdout.write('warming the server up… ')
      const warmId = await admin.createCoupon(options.mode, 1, 'warm-up')
      const { baseUrl, jwtSecret } = target
      await warmUp({ baseUrl, jwtSecret, userPrefix: `warm-${hex}-`, connections: 32 }, warmId, 1)
      console.log('done')
    }
    const sale = await runSale(target, admin, couponId, options, hex)
    await report(target, admin, couponId, options, sale)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    if (!cleaning) await cleanUp(target, options.keep)
  }
}

runMain('demo', main)
