/**
 * `npm run demo`: one flash sale, live in the terminal. Starts the service (or uses one already running),
 * creates a coupon, lets thousands of users press the button within a few seconds over HTTP keep-alive,
 * shows the progress as it happens and ends with the checks: nothing over-issued, nobody twice, the
 * coupons went to the first users, and how fast they were in Postgres. See `npm run demo -- --help`.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
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
import { arrivals, type LoadResult, nowMs, summarize } from '../bench/lib/load-protocol.ts'
import { type Audit, auditCoupon, BenchDb, BenchRedis, dropSchema } from '../bench/lib/probes.ts'
import { signUserToken } from '../src/auth/tokens.ts'

const HELP = `usage: npm run demo -- [options]

Simulates a flash sale against Coupon Rush and shows it live: a coupon, many users pressing the button
within a few seconds (some twice), answers as they come, coupons landing in Postgres, then a summary
with the correctness checks (over-issue, duplicates, FCFS against Postgres) and latency percentiles.

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
  const databaseUrl =
    stringOption(values, 'database-url') ??
    process.env.DATABASE_URL ??
    'postgres://127.0.0.1:5432/coupon_rush'
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
    schema: stringOption(values, 'schema') ?? process.env.DATABASE_SCHEMA ?? 'public',
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

/** Live counters of the sale, updated by the crowd and the stats poller. */
interface Live {
  planned: number
  sent: number
  answered: number
  accepted: number
  soldOut: number
  duplicates: number
  errors: number
  other: number
  issued: number
  expectedIssued: number
  startedAt: number
  rateWindow: [number, number][]
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
  while (live.rateWindow.length > 1 && now - live.rateWindow[0]![0] > 1_000) live.rateWindow.shift()
  const first = live.rateWindow[0]
  const rate = first && now - first[0] > 50 ? ((live.answered - first[1]) * 1000) / (now - first[0]) : 0
  const issuedFraction = live.expectedIssued > 0 ? live.issued / live.expectedIssued : 0
  return [
    title,
    `  requests  [${bar(live.answered / live.planned)}] ${String(Math.floor((live.answered / live.planned) * 100)).padStart(3)}%  ` +
      `sent ${n0(live.sent)} / ${n0(live.planned)}   answered ${n0(live.answered)}   ${n0(rate)} req/s`,
    `  answers   ${acceptedLabel(mode)} ${n0(live.accepted)}   sold out ${n0(live.soldOut)}   duplicates (409) ${n0(live.duplicates)}` +
      `${live.other > 0 ? `   other ${n0(live.other)}` : ''}${live.errors > 0 ? `   errors ${n0(live.errors)}` : ''}`,
    `  Postgres  [${bar(issuedFraction)}] issued ${n0(live.issued)}${live.expectedIssued > 0 ? ` / ${n0(live.expectedIssued)}` : ''}`,
    `  elapsed   ${n1(elapsed)} s`,
  ]
}

/** The crowd: every user presses at their arrival time (or as fast as the connections allow with rate 0). */
async function crowd(
  baseUrl: string,
  couponId: number,
  options: Options,
  order: Int32Array,
  tokens: string[],
  userIds: string[],
  live: Live,
): Promise<LoadResult> {
  const pool = new Pool(baseUrl, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  })
  const total = order.length
  const latencies: number[] = []
  const statusCounts: Record<string, number> = {}
  const accepted: LoadResult['accepted'] = { users: [], positions: [], sentAtMs: [], statuses: [] }
  const soldOutUsers: string[] = []
  const start = nowMs()
  let lastResponseAtMs = start
  const path = `/coupons/${couponId}/issuance`

  const press = async (index: number, arrivalAt: number): Promise<void> => {
    const user = order[index]!
    const sentAt = nowMs()
    live.sent++
    try {
      const response = await pool.request({ method: 'POST', path, headers: { authorization: tokens[user]! } })
      const text = await response.body.text()
      const doneAt = nowMs()
      lastResponseAtMs = doneAt
      latencies.push(doneAt - arrivalAt)
      live.answered++
      const status = response.statusCode
      statusCounts[String(status)] = (statusCounts[String(status)] ?? 0) + 1
      if (status >= 200 && status < 300) {
        live.accepted++
        const answer = JSON.parse(text) as { position?: number; status?: string }
        accepted.users.push(userIds[user]!)
        accepted.positions.push(answer.position ?? 0)
        accepted.sentAtMs.push(sentAt)
        accepted.statuses.push(answer.status ?? '')
      } else if (status === 410) {
        live.soldOut++
        soldOutUsers.push(userIds[user]!)
      } else if (status === 409) live.duplicates++
      else live.other++
    } catch {
      live.answered++
      live.errors++
    }
  }

  if (options.rate > 0) {
    const interval = 1000 / options.rate
    const inFlight: Promise<void>[] = []
    let next = 0
    while (next < total) {
      const due = Math.min(total, Math.floor((nowMs() - start) / interval) + 1)
      while (next < due) {
        inFlight.push(press(next, start + next * interval))
        next++
      }
      if (next < total) await sleep(1)
    }
    await Promise.all(inFlight)
  } else {
    let next = 0
    await Promise.all(
      Array.from({ length: Math.min(options.connections, total) }, async () => {
        while (next < total) {
          const index = next++
          await press(index, nowMs())
        }
      }),
    )
  }
  await pool.close()
  const elapsedSec = Math.max((lastResponseAtMs - start) / 1000, 1e-6)
  return {
    kind: options.rate > 0 ? 'open' : 'closed',
    sent: live.sent,
    completed: live.answered - live.errors,
    errors: live.errors,
    statusCounts,
    firstSendAtMs: start,
    lastResponseAtMs,
    rps: live.answered / elapsedSec,
    latency: summarize(latencies),
    accepted,
    soldOutUsers,
    distinctUsers: options.users,
    repeatsSent: total - options.users,
    cutByDuration: false,
    cpuSeconds: 0,
  }
}

/** About a second of requests against a one-unit coupon of the same mode (mostly the sold-out path). */
async function warmUp(admin: AdminClient, baseUrl: string, mode: IssueMode, jwtSecret: string, hex: string) {
  const couponId = await admin.createCoupon(mode, 1, 'warm-up')
  const pool = new Pool(baseUrl, { connections: 32, pipelining: 1 })
  const tokens = Array.from({ length: 3_000 }, (_, index) =>
    signUserToken(jwtSecret, `warm-${hex}-${index}`, 600),
  )
  const until = Date.now() + 1_000
  let next = 0
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (Date.now() < until && next < tokens.length) {
        const token = tokens[next++]!
        const response = await pool
          .request({
            method: 'POST',
            path: `/coupons/${couponId}/issuance`,
            headers: { authorization: `Bearer ${token}` },
          })
          .catch(() => undefined)
        await response?.body.dump()
      }
    }),
  )
  await pool.close()
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2))
  if (options === undefined) return
  const hex = randomBytes(3).toString('hex')
  let server: ChildService | undefined
  let baseUrl = options.url ?? ''
  let adminToken = options.adminToken ?? ''
  let jwtSecret = options.jwtSecret ?? ''
  const databaseUrl = options.databaseUrl
  let schema = options.schema
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390'
  const redisPrefix = `demo:${hex}:`
  const ownServer = options.url === undefined

  const cleanUp = async () => {
    if (!ownServer) return
    if (options.keep && server?.running) {
      server.process.unref()
      console.log(
        `\nkept: the server runs on ${baseUrl} (pid ${server.pid}; stop it with \`kill ${server.pid}\`), ` +
          `ADMIN_TOKEN=${adminToken} JWT_SECRET=${jwtSecret}; schema ${schema} in ${databaseUrl}, Redis keys ${redisPrefix}*; log ${server.logFile}`,
      )
      return
    }
    await server?.stop()
    if (options.keep) return
    await dropSchema(databaseUrl, schema).catch(() => {})
    const redis = new BenchRedis(redisUrl)
    await redis.deleteByPrefix(redisPrefix).catch(() => 0)
    await redis.close()
  }
  let cleaning: Promise<void> | undefined
  const onSignal = () => {
    cleaning ??= cleanUp().finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    if (ownServer) {
      const port = await freePort()
      adminToken = randomBytes(18).toString('base64url')
      jwtSecret = randomBytes(32).toString('base64url')
      schema = `demo_${hex}`
      let kafkaBrokers: string | undefined
      if (options.mode === 'kafka') {
        kafkaBrokers = process.env.KAFKA_BROKERS ?? kafkaBroker()
        if (kafkaBrokers === undefined)
          throw new Error('the kafka mode needs a Kafka broker: start one with `npm run kafka:start`')
      }
      const logDir = mkdtempSync(join(tmpdir(), 'coupon-rush-demo-'))
      process.stdout.write(
        `starting the server on port ${port} (schema ${schema}, log ${logDir}/server.log)… `,
      )
      server = await startServer(
        {
          port,
          redisUrl,
          databaseUrl,
          schema,
          redisPrefix,
          jwtSecret,
          adminToken,
          kafkaBrokers,
          extra: { RATE_LIMIT_PER_USER: '20' },
        },
        join(logDir, 'server.log'),
      )
      baseUrl = `http://127.0.0.1:${port}`
      console.log('up')
    }
    const admin = new AdminClient(baseUrl, adminToken)
    let couponId: number
    try {
      couponId = await admin.createCoupon(options.mode, options.quantity, `Flash sale demo (${options.mode})`)
    } catch (error) {
      if (error instanceof ModeUnavailableError)
        throw new Error(
          `the server does not offer the ${options.mode} mode (422 MODE_UNAVAILABLE: ${error.message})`,
        )
      throw error
    }

    if (ownServer) {
      // A flash sale hits a server that has been running: give the fresh one a second of traffic first.
      process.stdout.write('warming the server up… ')
      await warmUp(admin, baseUrl, options.mode, jwtSecret, hex)
      console.log('done')
    }

    const order = arrivals(options.users, options.repeat, Date.now() & 0x7fffffff)
    const userIds = Array.from({ length: options.users }, (_, index) => `demo-${hex}-${index}`)
    process.stdout.write(`signing ${n0(options.users)} user tokens… `)
    const tokens = userIds.map((userId) => `Bearer ${signUserToken(jwtSecret, userId, 3_600)}`)
    console.log('done\n')

    const title =
      `Flash sale: coupon #${couponId} (${options.mode}), ${n0(options.quantity)} coupons, ${n0(options.users)} users ` +
      `(${n0(order.length - options.users)} press twice) ${options.rate > 0 ? `arriving at ${n0(options.rate)}/s` : `as fast as ${options.connections} connections go`}`
    const live: Live = {
      planned: order.length,
      sent: 0,
      answered: 0,
      accepted: 0,
      soldOut: 0,
      duplicates: 0,
      errors: 0,
      other: 0,
      issued: 0,
      expectedIssued: Math.min(options.quantity, options.users),
      startedAt: nowMs(),
      rateWindow: [],
    }
    const screen = new Screen()
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
    const painter = setInterval(() => {
      live.rateWindow.push([nowMs(), live.answered])
      screen.draw(frame(live, title, options.mode))
    }, 100)

    const result = await crowd(baseUrl, couponId, options, order, tokens, userIds, live)
    // Every admitted user must end with a row (queue: the first `quantity` of them).
    const admitted = new Set(result.accepted.users).size
    live.expectedIssued = options.mode === 'queue' ? Math.min(options.quantity, admitted) : admitted
    const deadline = Date.now() + 60_000
    while (live.issued < live.expectedIssued && Date.now() < deadline) await sleep(50)
    polling = false
    await poller
    clearInterval(painter)
    screen.done(frame(live, title, options.mode))
    const allIssued = live.issued >= live.expectedIssued
    const lastRowAt = allIssued ? lastIssuedChangeAt : undefined

    // The checks, read from Postgres directly.
    let audit: Audit | undefined
    let auditError: string | undefined
    const db = new BenchDb(databaseUrl, schema)
    try {
      audit = await auditCoupon(db, couponId, options.quantity, options.mode, result)
    } catch (error) {
      auditError = (error as Error).message
    } finally {
      await db.close()
    }
    const ok = (value: boolean) => (value ? '✔' : '✘')
    const lines: string[] = ['', 'Summary']
    lines.push(
      `  requests   ${n0(result.sent)} sent, ${n0(live.answered)} answered in ${n2((result.lastResponseAtMs - result.firstSendAtMs) / 1000)} s ` +
        `(${n0(result.rps)} req/s)${result.errors > 0 ? `, ${n0(result.errors)} failed` : ''}`,
    )
    lines.push(
      `  answers    ${acceptedLabel(options.mode)} ${n0(live.accepted)}   sold out ${n0(live.soldOut)}   duplicates refused (409) ${n0(live.duplicates)}` +
        (live.other > 0
          ? `   other ${Object.entries(result.statusCounts)
              .filter(([code]) => !['201', '202', '409', '410'].includes(code))
              .map(([code, count]) => `${code}×${count}`)
              .join(' ')}`
          : ''),
    )
    if (audit) {
      lines.push(
        `  issued     ${n0(audit.rows)} coupons in Postgres   ${ok(audit.overIssued === 0)} over-issue ${audit.overIssued}   ` +
          `${ok(audit.duplicateRows + audit.doubleAccepted === 0)} duplicates ${audit.duplicateRows + audit.doubleAccepted}`,
      )
      const who = options.mode === 'queue' ? 'the first by position among the queued' : 'the accepted users'
      lines.push(
        `  FCFS       ${ok(audit.fcfs)} issued users == ${who} (${n0(audit.rows)})` +
          (audit.positionsExact === undefined
            ? ''
            : `   ${ok(audit.positionsExact)} positions exactly 1..${n0(audit.rows)} as answered`) +
          (audit.soldOutWithRow > 0 ? `   ✘ ${audit.soldOutWithRow} sold-out users hold a row` : ''),
      )
      for (const problem of audit.problems) lines.push(`             ✘ ${problem}`)
    } else {
      lines.push(
        `  checks     could not read Postgres (${auditError}); server audit: ${JSON.stringify(await admin.audit(couponId).catch(() => 'unavailable'))}`,
      )
    }
    lines.push(
      `  latency    p50 ${n1(result.latency.p50)} ms   p99 ${n1(result.latency.p99)} ms   p99.9 ${n1(result.latency.p999)} ms   max ${n1(result.latency.max)} ms` +
        ` (${options.rate > 0 ? 'from arrival to answer' : 'from send to answer'})`,
    )
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
    console.log(lines.join('\n'))
    const failed = !audit || audit.problems.length > 0 || !allIssued
    if (failed) process.exitCode = 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    if (!cleaning) await cleanUp()
  }
}

runMain('demo', main)
