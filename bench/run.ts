/**
 * `npm run bench`: every issuance mode on the same flash-sale workload in one run, against a bare Fastify
 * route as the ceiling, the `stream` speed goals (request-to-row at a target rate, the writer alone), and
 * `stream` on Redis with each persistence setting. A full run writes bench/results/latest.{json,svg} and
 * docs/benchmarks.md; other runs write to .cache/bench/. See `npm run bench -- --help`.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { AdminClient, type IssueMode, ModeUnavailableError } from './lib/admin.ts'
import {
  integerOption,
  numberOption,
  parseCommandLine,
  runMain,
  stringOption,
  UsageError,
} from './lib/cli.ts'
import { CpuMeter, type CpuRoles, type CpuUse } from './lib/cpu.ts'
import { evaluateGoals } from './lib/goals.ts'
import {
  type ChildService,
  freePort,
  hasCommand,
  kafkaBroker,
  machineInfo,
  type ServiceConfig,
  startBareServer,
  startPrivateRedis,
  startServer,
  startWorker,
} from './lib/infra.ts'
import { LoadRun, type Progress, warmUp } from './lib/load.ts'
import type { LoadJob, LoadResult } from './lib/load-protocol.ts'
import { nowMs, summarize } from './lib/load-protocol.ts'
import {
  type Audit,
  auditCoupon,
  BenchDb,
  BenchRedis,
  commandDelta,
  createDatabaseIfMissing,
  databaseTransactions,
  dropDatabase,
  dropSchema,
  fcfsHeld,
  RowFollower,
  type RowWatch,
  RowWatcher,
} from './lib/probes.ts'
import {
  type AllAdmittedBare,
  type BenchReport,
  type DurabilityRun,
  type GoalPhase,
  type ModeReport,
  type Persistence,
  type PhaseReport,
  printSummary,
  type SoldOutRound,
  stripLoad,
  type WriterPhase,
  writeReports,
} from './lib/report.ts'
import { highestRateMet, nextRate, type RateStep, ROW_P99_LIMIT_MS } from './lib/stages.ts'
import { measureWriterFloor } from './lib/writer-floor.ts'

const SUBJECTS = ['bare', 'stream', 'sync', 'queue', 'kafka'] as const
type Subject = (typeof SUBJECTS)[number]

const HELP = `usage: npm run bench -- [options]

Runs every issuance mode (sync, queue, stream, and kafka when a broker is up) on the same flash-sale
workload, one after another, each against a fresh server process, plus a bare Fastify route as the
ceiling; then the stream speed goals (request-to-row at --rate, the writer alone) and the stream sale on
Redis without persistence, with appendfsync everysec and with appendfsync always.

A full run (no --quick, --modes, --skip-goals or --skip-durability) writes bench/results/latest.{json,svg}
and docs/benchmarks.md, plus bench/results/<time>.json (git-ignored). Any other run prints its figures and
writes them to .cache/bench/<time>.{json,md,svg} only, unless --write-docs. The run's Postgres schema and
Redis keys are removed at the end, and its database too if the run created it.

options
  --users N          distinct users in each closed-loop sale (default 100000, a flash sale of 100,000 people
                     for 1,000 coupons; --quick 10000)
  --quantity N       coupons per sale (default 1000)
  --connections N    keep-alive connections of the load generator (default 64)
  --duration S       the closed-loop phase stops after S seconds even if users are left (default 15; --quick 5)
  --rate N           arrival rate of the open-loop goal phase on stream, req/s (default 10000); each mode's
                     open-loop phase runs at min(rate, 70% of its own closed-loop req/s)
  --open-duration S  length of the open-loop phases (default 5; --quick 2)
  --writer-rows N    accepted entries the writer-only phase drains (default 200000; --quick 20000)
  --modes LIST       comma list of bare,sync,queue,stream,kafka (default: all; kafka only with a broker)
  --repeat F         fraction of users pressing twice (default 0.05)
  --rounds N         alternating rounds of goal A (default 5; --quick 1; 0: none): the bare route, the bare
                     route with the token check and a sold-out sale back to back (even rounds in reverse order),
                     each round with new users; goal A is the median of the rounds' own ratios (needs bare
                     and stream in --modes)
  --skip-goals       skip the stream goal phases (every request admitted, request-to-row at --rate and the
                     rate search, the writer alone)
  --skip-rate-search skip the all-admitted rate search (steps of a quarter up or down from --rate until
                     request-to-row p99 crosses 250 ms)
  --cli FILE         the coupon-rush.mjs to bench (default this checkout's bin/coupon-rush.mjs; give another
                     checkout's for before/after figures on the same machine)
  --skip-durability  skip the stream sales on Redis servers of the run's own (no persistence, appendfsync
                     everysec, appendfsync always, a replica with REDIS_REPLICA_ACK=1; free ports, temp folders)
  --redis-url URL    the Redis of the mode phases (default REDIS_URL if set, else a redis-server of the
                     run's own on a free port, so the command counts are the benchmark's alone)
  --database-url URL the Postgres database (default DATABASE_URL if set, else
                     postgres://127.0.0.1:5432/coupon_rush_bench, created if missing and then dropped)
  --write-docs       write bench/results/latest.* and docs/benchmarks.md even if this is not a full run
  --no-docs          write a full run to .cache/bench/ instead
  --render FILE      measure nothing: rebuild docs/benchmarks.md and bench/results/latest.* from the JSON
                     of an earlier run (e.g. bench/results/latest.json), with the goals judged again
  --keep             keep the run's Postgres schema (and database) and Redis keys
  --quick            a short profile (about three minutes), written to .cache/bench/
  --help             this text`

interface Options {
  users: number
  quantity: number
  connections: number
  duration: number
  rate: number
  openDuration: number
  writerRows: number
  /** Alternating rounds of goal A (bare, bare + token check, sold-out sale); 0: none. */
  soldOutRounds: number
  subjects: Subject[]
  repeat: number
  skipGoals: boolean
  skipRateSearch: boolean
  skipDurability: boolean
  cli?: string
  redisUrl?: string
  databaseUrl: string
  /** Write bench/results/latest.* and docs/benchmarks.md. */
  publish: boolean
  keep: boolean
  quick: boolean
  warmupSec: number
  /** Re-render the report of an earlier run from its JSON (no measuring). */
  render?: string
  argv: string[]
}

/** One sale phase of a mode (closed or open loop): the load, when the rows landed, the audit, the CPU. */
function salePhase(
  couponId: number,
  quantity: number,
  result: LoadResult,
  watch: RowWatch,
  audit: Audit,
  cpu: CpuUse,
): PhaseReport {
  return {
    couponId,
    quantity,
    load: stripLoad(result),
    rowsReached: watch.reached,
    timeToLastRowMs:
      watch.lastRowSeenAtMs === undefined ? undefined : watch.lastRowSeenAtMs - result.firstSendAtMs,
    timeToLastIssuedAtMs:
      audit.lastIssuedAtMs === undefined ? undefined : audit.lastIssuedAtMs - result.firstSendAtMs,
    audit,
    cpu,
  }
}

const URL_SCHEMES = { postgres: /^postgres(ql)?:\/\//, redis: /^rediss?:\/\// }

function urlOption(
  value: string | undefined,
  name: string,
  kind: keyof typeof URL_SCHEMES,
): string | undefined {
  if (value !== undefined && !URL_SCHEMES[kind].test(value))
    throw new UsageError(`${name} must be a ${kind}:// URL, got "${value}"`)
  return value
}

function parseOptions(argv: string[]): Options | undefined {
  const values = parseCommandLine(argv, {
    users: { type: 'string' },
    quantity: { type: 'string' },
    connections: { type: 'string' },
    duration: { type: 'string' },
    rate: { type: 'string' },
    'open-duration': { type: 'string' },
    'writer-rows': { type: 'string' },
    rounds: { type: 'string' },
    modes: { type: 'string' },
    repeat: { type: 'string' },
    'skip-goals': { type: 'boolean' },
    'skip-rate-search': { type: 'boolean' },
    cli: { type: 'string' },
    'skip-durability': { type: 'boolean' },
    'redis-url': { type: 'string' },
    'database-url': { type: 'string' },
    'write-docs': { type: 'boolean' },
    'no-docs': { type: 'boolean' },
    render: { type: 'string' },
    keep: { type: 'boolean' },
    quick: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    console.log(HELP)
    return undefined
  }
  const quick = values.quick === true
  let subjects: Subject[] = [...SUBJECTS]
  const modes = stringOption(values, 'modes')
  if (modes !== undefined) {
    const names = modes
      .split(',')
      .map((name) => name.trim())
      .filter(Boolean)
    const unknown = names.filter((name) => !(SUBJECTS as readonly string[]).includes(name))
    if (unknown.length > 0 || names.length === 0)
      throw new UsageError(`--modes takes a comma list of ${SUBJECTS.join(',')}, got "${modes}"`)
    subjects = SUBJECTS.filter((name) => names.includes(name))
  }
  // The command line first, then the environment the service itself reads.
  const databaseUrl =
    urlOption(stringOption(values, 'database-url'), '--database-url', 'postgres') ??
    urlOption(process.env.DATABASE_URL || undefined, 'DATABASE_URL', 'postgres') ??
    'postgres://127.0.0.1:5432/coupon_rush_bench'
  const redisUrl =
    urlOption(stringOption(values, 'redis-url'), '--redis-url', 'redis') ??
    urlOption(process.env.REDIS_URL || undefined, 'REDIS_URL', 'redis')
  const skipGoals = values['skip-goals'] === true
  const skipDurability = values['skip-durability'] === true
  const full = !quick && modes === undefined && !skipGoals && !skipDurability
  return {
    users: integerOption(values, 'users', quick ? 10_000 : 100_000, 10, 2_000_000),
    quantity: integerOption(values, 'quantity', 1_000, 1, 10_000_000),
    connections: integerOption(values, 'connections', 64, 1, 4_096),
    duration: integerOption(values, 'duration', quick ? 5 : 15, 1, 3_600),
    rate: integerOption(values, 'rate', 10_000, 1, 1_000_000),
    openDuration: integerOption(values, 'open-duration', quick ? 2 : 5, 1, 600),
    writerRows: integerOption(values, 'writer-rows', quick ? 20_000 : 200_000, 100, 10_000_000),
    soldOutRounds: integerOption(values, 'rounds', quick ? 1 : 5, 0, 20),
    subjects,
    repeat: numberOption(values, 'repeat', 0.05, 0, 1),
    skipGoals,
    skipRateSearch: values['skip-rate-search'] === true,
    skipDurability,
    cli: stringOption(values, 'cli'),
    redisUrl,
    databaseUrl,
    publish: values['write-docs'] === true || (full && values['no-docs'] !== true),
    keep: values.keep === true,
    quick,
    warmupSec: quick ? 0.5 : 1,
    render: stringOption(values, 'render'),
    argv,
  }
}

/** Everything one run shares: the services, the run's schema and key prefix, the processes to clean up. */
interface Run {
  options: Options
  id: string
  logDir: string
  redisUrl: string
  privateRedis?: ChildService
  /** The run created the database (and drops it at the end), rather than a schema in an existing one. */
  createdDatabase: boolean
  redis: BenchRedis
  schema: string
  redisPrefix: string
  jwtSecret: string
  adminToken: string
  kafka?: string
  children: Set<ChildService>
  loads: Set<LoadRun>
}

function serviceConfig(run: Run, port: number, extra: Partial<ServiceConfig> = {}): ServiceConfig {
  return {
    port,
    redisUrl: run.redisUrl,
    databaseUrl: run.options.databaseUrl,
    schema: run.schema,
    redisPrefix: run.redisPrefix,
    jwtSecret: run.jwtSecret,
    adminToken: run.adminToken,
    logLevel: 'warn',
    ...(run.options.cli ? { cli: run.options.cli } : {}),
    ...extra,
  }
}

const startedAtMs = Date.now()

function say(line: string): void {
  if (process.stdout.isTTY) process.stdout.write('\r\x1b[2K')
  const elapsed = `${Math.round((Date.now() - startedAtMs) / 1000)}s`.padStart(4)
  console.log(line.startsWith('  ') ? `${elapsed} ${line.slice(2)}` : line)
}

/** What a phase opened (pools, pollers), closed at its end whether it succeeded or not. */
class Scope {
  private readonly items: (() => unknown)[] = []

  add<T>(item: T, dispose: (item: T) => unknown): T {
    this.items.push(() => dispose(item))
    return item
  }

  async close(): Promise<void> {
    for (const dispose of this.items.reverse()) await Promise.resolve(dispose()).catch(() => {})
  }
}

function progressLine(label: string): (progress: Progress) => void {
  if (!process.stdout.isTTY) return () => {}
  return (progress) => {
    const codes = Object.entries(progress.statusCounts)
      .map(([code, count]) => `${code}:${count.toLocaleString('en-US')}`)
      .join(' ')
    process.stdout.write(
      `\r\x1b[2K  ${label}: ${progress.completed.toLocaleString('en-US')} answered  ${codes}`,
    )
  }
}

function fmt(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

async function withChild<T>(run: Run, child: ChildService, body: (scope: Scope) => Promise<T>): Promise<T> {
  run.children.add(child)
  const scope = new Scope()
  try {
    return await body(scope)
  } finally {
    await scope.close()
    await child.stop()
    run.children.delete(child)
  }
}

async function runLoad(
  run: Run,
  job: LoadJob,
  label: string,
): Promise<{ load: LoadRun; go: () => Promise<LoadResult> }> {
  const load = await LoadRun.prepare(job, progressLine(label))
  run.loads.add(load)
  return {
    load,
    go: async () => {
      try {
        return await load.go()
      } finally {
        run.loads.delete(load)
        if (process.stdout.isTTY) process.stdout.write('\r\x1b[2K')
      }
    },
  }
}

function job(
  run: Run,
  kind: LoadJob['kind'],
  baseUrl: string,
  couponId: number,
  userPrefix: string,
  extra: Partial<LoadJob> = {},
): LoadJob {
  return {
    kind,
    baseUrl,
    path: `/coupons/${couponId}/issuance`,
    jwtSecret: run.jwtSecret,
    userPrefix,
    users: run.options.users,
    repeatRatio: run.options.repeat,
    seed: 42,
    connections: run.options.connections,
    durationSec: run.options.duration,
    rate: 0,
    collectAccepted: true,
    ...extra,
  }
}

/**
 * Postgres backends of the benchmark database (for the CPU split): the service's, and the benchmark's own
 * (its row pollers, application_name coupon-rush-bench), counted apart so they do not pass for the service's.
 */
async function postgresPids(run: Run): Promise<{ service: number[]; bench: number[] }> {
  const db = new BenchDb(run.options.databaseUrl, run.schema)
  try {
    const rows = await db.query<{ pid: number; bench: boolean }>(
      `SELECT pid, application_name = 'coupon-rush-bench' AS bench FROM pg_stat_activity
       WHERE datname = current_database() AND pid <> pg_backend_pid()`,
    )
    return {
      service: rows.filter((row) => !row.bench).map((row) => row.pid),
      bench: rows.filter((row) => row.bench).map((row) => row.pid),
    }
  } finally {
    await db.close()
  }
}

const NO_PIDS = { service: [], bench: [] }

class PhaseCpu {
  private meter: CpuMeter | undefined
  private pgPids: { service: number[]; bench: number[] } = NO_PIDS
  private readonly roles: () => CpuRoles

  constructor(run: Run, processes: () => Record<string, number | undefined>) {
    this.roles = () => {
      const roles: CpuRoles = {}
      const pids = { redis: run.privateRedis?.pid, ...processes() }
      for (const [role, pid] of Object.entries(pids)) if (pid !== undefined) roles[role] = [pid]
      roles.postgres = this.pgPids.service
      roles.benchPostgres = this.pgPids.bench
      roles.bench = [process.pid]
      return roles
    }
  }

  static async start(run: Run, processes: () => Record<string, number | undefined>): Promise<PhaseCpu> {
    const cpu = new PhaseCpu(run, processes)
    cpu.pgPids = await postgresPids(run).catch(() => NO_PIDS)
    cpu.meter = new CpuMeter(cpu.roles)
    return cpu
  }

  /** `load` is the phase's load result: its generator has exited and reported its own CPU time. */
  async stop(run: Run, load?: LoadResult): Promise<CpuUse> {
    const later = await postgresPids(run).catch(() => NO_PIDS)
    this.pgPids = {
      service: [...new Set([...this.pgPids.service, ...later.service])],
      bench: [...new Set([...this.pgPids.bench, ...later.bench])],
    }
    return this.meter!.stop(load ? { generator: load.cpuSeconds } : {})
  }
}

/**
 * Makes the server's Postgres backends publish their transaction counters: a backend reports its counters
 * when it goes idle at most once a second (else up to 10 s later), so after a pause every backend is given a
 * transaction (20 concurrent stats reads spread over the pool) and reports everything pending.
 */
async function flushPostgresStats(admin: AdminClient, couponId: number): Promise<void> {
  await sleep(1_100)
  await Promise.all(Array.from({ length: 20 }, () => admin.stats(couponId).catch(() => undefined)))
  await sleep(150)
}

function warm(run: Run, baseUrl: string, couponId: number, label: string, seconds: number) {
  const { connections } = run.options
  const job = { baseUrl, jwtSecret: run.jwtSecret, userPrefix: `w-${label}-${run.id}-`, connections }
  return warmUp(job, couponId, seconds)
}

function phaseLine(label: string, phase: PhaseReport): string {
  const load = phase.load
  const parts = [
    `${label.padEnd(22)} ${fmt(load.rps).padStart(7)} req/s`,
    `p50 ${fmt(load.latency.p50, 1)} p99 ${fmt(load.latency.p99, 1)} p99.9 ${fmt(load.latency.p999, 1)} ms`,
  ]
  if (load.offeredRate) parts.push(`offered ${fmt(load.offeredRate)}/s`)
  if (phase.timeToLastRowMs !== undefined)
    parts.push(`last row after ${fmt(phase.timeToLastRowMs / 1000, 2)} s`)
  if (phase.audit)
    parts.push(
      `rows ${fmt(phase.audit.rows)} dup ${phase.audit.duplicateRows + phase.audit.doubleAccepted} over ${phase.audit.overIssued} FCFS ${fcfsHeld(phase.audit) ? 'ok' : 'FAILED'}`,
    )
  return `  ${parts.join('  ')}`
}

/**
 * Lets a started sale run to its end, waits for its rows (in `queue` only the first `quantity` admitted get
 * one) and stops the phase's CPU meter.
 */
async function finishSale(
  run: Run,
  mode: IssueMode,
  go: () => Promise<LoadResult>,
  watcher: RowWatcher,
  cpu: PhaseCpu,
): Promise<{ result: LoadResult; watch: RowWatch; cpuUse: CpuUse }> {
  const result = await go()
  const admitted = new Set(result.accepted.users).size
  const target = mode === 'queue' ? Math.min(run.options.quantity, admitted) : admitted
  const watch = await watcher.finish(target, 120_000)
  const cpuUse = await cpu.stop(run, result)
  return { result, watch, cpuUse }
}

/**
 * One sale of `couponId` (--quantity units) on a running server: the load, the server's and the generator's CPU,
 * the rows waited for and audited.
 */
async function measureSale(
  run: Run,
  on: { server: ChildService; db: BenchDb; scope: Scope },
  mode: IssueMode,
  couponId: number,
  load: { job: LoadJob; label: string; doneLabel: string },
): Promise<PhaseReport> {
  const { quantity } = run.options
  const { load: generator, go } = await runLoad(run, load.job, load.label)
  const cpu = await PhaseCpu.start(run, () => ({ server: on.server.pid, generator: generator.pid }))
  const watcher = on.scope.add(new RowWatcher(on.db, couponId), (item) => item.cancel())
  const { result, watch, cpuUse } = await finishSale(run, mode, go, watcher, cpu)
  const audit = await auditCoupon(on.db, couponId, quantity, mode, result)
  const phase = salePhase(couponId, quantity, result, watch, audit, cpuUse)
  say(phaseLine(load.doneLabel, phase))
  return phase
}

/** The open-loop rate a subject can take (70% of its closed-loop req/s, at most --rate), and its users. */
function openLoop(run: Run, closedRps: number): { rate: number; users: number } {
  const { options } = run
  const rate = Math.max(1, Math.min(options.rate, Math.floor(closedRps * 0.7)))
  return { rate, users: Math.max(10, Math.round((rate * options.openDuration) / (1 + options.repeat))) }
}

type ClosedSale = Pick<ModeReport, 'closed' | 'redis' | 'postgres'>

/**
 * A closed-loop sale on a fresh server, with the Redis command and Postgres transaction accounting;
 * `extra` configures the server (a Kafka broker, another Redis). A string: the server does not offer the mode.
 */
async function closedSale(
  run: Run,
  mode: IssueMode,
  label: string,
  extra: Partial<ServiceConfig>,
  redis: BenchRedis,
  redisPid?: number,
  quantity = run.options.quantity,
): Promise<ClosedSale | string> {
  const { options } = run
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const server = await startServer(serviceConfig(run, port, extra), join(run.logDir, `${label}.log`))
  return withChild(run, server, async (scope) => {
    const admin = new AdminClient(baseUrl, run.adminToken)
    let warmId: number
    try {
      warmId = await admin.createCoupon(mode, 1, `warm-up (${mode})`)
    } catch (error) {
      if (error instanceof ModeUnavailableError) return error.message
      throw error
    }
    const couponId = await admin.createCoupon(mode, quantity)
    await warm(run, baseUrl, warmId, label, options.warmupSec)
    await flushPostgresStats(admin, warmId)
    const db = scope.add(new BenchDb(options.databaseUrl, run.schema), (item) => item.close())
    const { load, go } = await runLoad(
      run,
      job(run, 'closed', baseUrl, couponId, `${label}-${run.id}-`),
      `${label} closed loop`,
    )
    const redisBefore = await redis.commandStats()
    const pgBefore = await databaseTransactions(options.databaseUrl)
    const processes = () => ({
      server: server.pid,
      generator: load.pid,
      ...(redisPid ? { redis: redisPid } : {}),
    })
    const cpu = await PhaseCpu.start(run, processes)
    const watcher = scope.add(new RowWatcher(db, couponId), (item) => item.cancel())
    const { result, watch, cpuUse } = await finishSale(run, mode, go, watcher, cpu)
    const redisAfter = await redis.commandStats()
    const audit = await auditCoupon(db, couponId, quantity, mode, result)
    await db.close()
    await server.stop()
    const pgAfter = await databaseTransactions(options.databaseUrl)
    // Minus the benchmark's own queries, the probe before (its transaction shows in the reading after),
    // and the two connections of postgresPids.
    const transactions = pgAfter - pgBefore - db.queries - 1 - 2
    const commands = commandDelta(redisBefore, redisAfter)
    const totalCommands = [...commands.values()].reduce((sum, calls) => sum + calls, 0)
    const scriptCalls = ['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall'].reduce(
      (sum, name) => sum + (commands.get(name) ?? 0),
      0,
    )
    const issued = audit.rows
    const closed = salePhase(couponId, quantity, result, watch, audit, cpuUse)
    say(phaseLine(`${label} closed loop`, closed))
    return {
      closed,
      redis: {
        commands: totalCommands,
        scriptCalls,
        perIssued: issued > 0 ? totalCommands / issued : 0,
        perRequest: result.completed > 0 ? totalCommands / result.completed : 0,
        byCommand: Object.fromEntries([...commands.entries()].sort((a, b) => b[1] - a[1])),
      },
      postgres: {
        transactions,
        perIssued: issued > 0 ? transactions / issued : 0,
        perRequest: result.completed > 0 ? transactions / result.completed : 0,
      },
    }
  })
}

/** One mode: a closed-loop sale (with Redis/Postgres accounting) on one server, an open-loop sale on another. */
async function runMode(run: Run, mode: IssueMode): Promise<ModeReport> {
  const { options } = run
  if (mode === 'kafka' && run.kafka === undefined) {
    return {
      mode,
      status: 'skipped',
      reason: 'no Kafka broker is running (start one with `npm run kafka:start`)',
    }
  }
  const kafkaBrokers = mode === 'kafka' ? run.kafka : undefined
  const closed = await closedSale(run, mode, mode, { kafkaBrokers }, run.redis)
  if (typeof closed === 'string') {
    say(`  ${mode}: skipped (${closed})`)
    return { mode, status: 'skipped', reason: closed }
  }
  const report: ModeReport = { mode, status: 'ok', ...closed }

  {
    const { rate, users } = openLoop(run, report.closed?.load.rps ?? 0)
    const port = await freePort()
    const baseUrl = `http://127.0.0.1:${port}`
    const server = await startServer(
      serviceConfig(run, port, { kafkaBrokers }),
      join(run.logDir, `${mode}-open.log`),
    )
    await withChild(run, server, async (scope) => {
      const admin = new AdminClient(baseUrl, run.adminToken)
      const warmId = await admin.createCoupon(mode, 1, `warm-up (${mode})`)
      const couponId = await admin.createCoupon(mode, options.quantity)
      await warm(run, baseUrl, warmId, mode, Math.min(options.warmupSec, 0.5))
      const db = scope.add(new BenchDb(options.databaseUrl, run.schema), (item) => item.close())
      report.open = await measureSale(run, { server, db, scope }, mode, couponId, {
        job: job(run, 'open', baseUrl, couponId, `${mode}-o-${run.id}-`, { users, rate, maxBacklogSec: 2 }),
        label: `${mode} open loop @ ${fmt(rate)}/s`,
        doneLabel: `${mode} open loop`,
      })
      await db.close()
      // The closed-loop coupon's dead letters, from the server's audit: asked here, on the server of the
      // same schema and keys whose Postgres transactions are not counted, rather than on the closed loop's.
      report.deadLettered = (await admin.audit(closed.closed!.couponId!)).deadLettered
    })
  }
  return report
}

/**
 * The ceiling: the same load against a bare Fastify route in its own process. Then the same closed loop against
 * a bare route that checks each request's token with the service's HS256 verifier: what the contract asks
 * before any answer, so the floor of the sold-out path on this machine.
 */
async function runBare(run: Run): Promise<ModeReport> {
  const { closed, open } = await bareRoutePhases(run, 'bare', undefined)
  const { closed: tokenChecked } = await bareRoutePhases(run, 'bare + token check', run.jwtSecret)
  return { mode: 'bare', status: 'ok', closed, open, tokenChecked }
}

/** One bare server's phases: closed loop, and open loop for the plain route (no open loop with a token check). */
async function bareRoutePhases(
  run: Run,
  label: string,
  hs256Secret: string | undefined,
): Promise<Pick<ModeReport, 'closed' | 'open'>> {
  const logName = hs256Secret === undefined ? 'bare' : 'bare-token-check'
  return withBareServer(run, logName, hs256Secret, async (measure) => {
    const prefix = (kind: LoadJob['kind']) =>
      `${hs256Secret === undefined ? 'bare' : 'bare-token'}-${kind}-${run.id}-`
    const closed = await measure('closed', prefix('closed'), `${label} closed loop`)
    if (hs256Secret !== undefined) return { closed }
    const { rate, users } = openLoop(run, closed.load.rps)
    const open = await measure('open', prefix('open'), `${label} open @ ${fmt(rate)}/s`, {
      users,
      rate,
      maxBacklogSec: 2,
    })
    return { closed, open }
  })
}

/** One load against the bare server of `withBareServer`, its users named `userPrefix…`. */
type MeasureBareLoad = (
  kind: LoadJob['kind'],
  userPrefix: string,
  label: string,
  extra?: Partial<LoadJob>,
) => Promise<PhaseReport>

/**
 * A bare route's server on a free port (logging to `<name>.log`), warmed up, for `body` to measure loads
 * against; stopped when `body` ends.
 */
async function withBareServer<T>(
  run: Run,
  name: string,
  hs256Secret: string | undefined,
  body: (measure: MeasureBareLoad) => Promise<T>,
): Promise<T> {
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const server = await startBareServer(port, join(run.logDir, `${name}.log`), hs256Secret)
  return withChild(run, server, async () => {
    await warm(run, baseUrl, 0, name, run.options.warmupSec)
    return body((kind, userPrefix, label, extra = {}) =>
      measureBare(run, server, job(run, kind, baseUrl, 0, userPrefix, extra), label),
    )
  })
}

/** One load against a bare route's server: its CPU and the generator's, no rows (the route writes none). */
async function measureBare(
  run: Run,
  server: ChildService,
  loadJob: LoadJob,
  label: string,
): Promise<PhaseReport> {
  const { load, go } = await runLoad(run, { ...loadJob, collectAccepted: false }, label)
  const cpu = await PhaseCpu.start(run, () => ({ server: server.pid, generator: load.pid }))
  const result = await go()
  const phase: PhaseReport = { load: stripLoad(result), rowsReached: true, cpu: await cpu.stop(run, result) }
  say(phaseLine(label, phase))
  return phase
}

/**
 * Goal A in alternating rounds: the bare route, the bare route with the token check and a sold-out `stream`
 * sale back to back, on three servers started once, each round with new users (and a new coupon). The
 * machine's speed drifts by a third over minutes (the same token-check route measured 1.43× and 1.88× the bare
 * route in two runs of one morning), so phases minutes apart cannot be compared; goal A is the median of the
 * rounds' own ratios.
 */
async function runSoldOutRounds(run: Run): Promise<SoldOutRound[]> {
  const { options } = run
  const [barePort, tokenPort, salePort] = [await freePort(), await freePort(), await freePort()]
  const url = (port: number) => `http://127.0.0.1:${port}`
  const bare = await startBareServer(barePort, join(run.logDir, 'rounds-bare.log'))
  return withChild(run, bare, async () => {
    const token = await startBareServer(tokenPort, join(run.logDir, 'rounds-bare-token.log'), run.jwtSecret)
    return withChild(run, token, async () => {
      const sale = await startServer(serviceConfig(run, salePort), join(run.logDir, 'rounds-stream.log'))
      return withChild(run, sale, async (scope) => {
        const admin = new AdminClient(url(salePort), run.adminToken)
        const warmId = await admin.createCoupon('stream', 1, 'warm-up (rounds)')
        await warm(run, url(barePort), 0, 'rounds-bare', options.warmupSec)
        await warm(run, url(tokenPort), 0, 'rounds-token', options.warmupSec)
        await warm(run, url(salePort), warmId, 'rounds-stream', options.warmupSec)
        const db = scope.add(new BenchDb(options.databaseUrl, run.schema), (item) => item.close())
        const rounds: SoldOutRound[] = []
        for (let round = 1; round <= options.soldOutRounds; round++) {
          const prefix = (kind: string) => `r${round}-${kind}-${run.id}-`
          const measureBareRound = () =>
            measureBare(
              run,
              bare,
              job(run, 'closed', url(barePort), 0, prefix('bare')),
              `round ${round} bare`,
            )
          const measureToken = () =>
            measureBare(
              run,
              token,
              job(run, 'closed', url(tokenPort), 0, prefix('token')),
              `round ${round} bare + token`,
            )
          const measureSoldOut = async () => {
            const couponId = await admin.createCoupon('stream', options.quantity, `A round ${round}`)
            const label = `round ${round} stream sold out`
            return measureSale(run, { server: sale, db, scope }, 'stream', couponId, {
              job: job(run, 'closed', url(salePort), couponId, prefix('stream')),
              label,
              doneLabel: label,
            })
          }
          // Odd rounds run bare first, even rounds the sale first: a drift within a round favours neither.
          if (round % 2 === 1) {
            const barePhase = await measureBareRound()
            const tokenChecked = await measureToken()
            rounds.push({ bare: barePhase, tokenChecked, soldOut: await measureSoldOut() })
          } else {
            const soldOut = await measureSoldOut()
            const tokenChecked = await measureToken()
            rounds.push({ bare: await measureBareRound(), tokenChecked, soldOut })
          }
        }
        return rounds
      })
    })
  })
}

/** Request-to-row at `rate` (--rate) on `stream`, every arrival a new user and every request a row. */
async function runGoalPhase(run: Run, rate = run.options.rate, tag = 'goal'): Promise<GoalPhase> {
  const { options } = run
  const seconds = options.openDuration
  const users = rate * seconds
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const server = await startServer(serviceConfig(run, port), join(run.logDir, `${tag}-request-to-row.log`))
  return withChild(run, server, async (scope) => {
    const admin = new AdminClient(baseUrl, run.adminToken)
    const warmId = await admin.createCoupon('stream', 1, 'warm-up (goal)')
    const couponId = await admin.createCoupon('stream', users, 'request-to-row goal')
    await warm(run, baseUrl, warmId, 'goal', options.warmupSec)
    const db = scope.add(new BenchDb(options.databaseUrl, run.schema), (item) => item.close())
    const { load, go } = await runLoad(
      run,
      job(run, 'open', baseUrl, couponId, `${tag}-${run.id}-`, {
        users,
        rate,
        repeatRatio: 0,
        maxBacklogSec: 1,
      }),
      `stream open loop @ ${fmt(rate)}/s (${tag})`,
    )
    const cpu = await PhaseCpu.start(run, () => ({ server: server.pid, generator: load.pid }))
    const follower = scope.add(new RowFollower(db, couponId), (item) => item.cancel())
    const result = await go()
    const admitted = new Set(result.accepted.users).size
    const seenAt = await follower.finish(admitted, 120_000)
    const cpuUse = await cpu.stop(run, result)
    const audit = await auditCoupon(db, couponId, users, 'stream', result)
    await db.close()
    const observed: number[] = []
    result.accepted.users.forEach((user, index) => {
      const at = seenAt.get(user)
      const sent = result.accepted.sentAtMs[index]!
      if (at !== undefined && sent > 0) observed.push(at - sent)
    })
    const phase: GoalPhase = {
      rate,
      seconds,
      couponId,
      load: stripLoad(result),
      audit,
      requestToRowObserved: summarize(observed),
      requestToRowCommitted: audit.requestToRow,
      cpu: cpuUse,
    }
    say(
      `  stream @ ${fmt(rate)}/s ${tag.padEnd(9)} sent ${fmt(result.achievedSendRate ?? 0)}/s answered ${fmt(result.rps)}/s  ` +
        `request-to-row p99 ${fmt(phase.requestToRowObserved.p99, 1)} ms (seen by poll), ${fmt(phase.requestToRowCommitted.p99, 1)} ms (issued_at)`,
    )
    return phase
  })
}

/**
 * Starts a `coupon-rush worker` and waits until `watcher` sees `admitted` rows; CPU is metered from the spawn
 * and, by a second meter, from the first row seen (the drain alone, without the worker's start-up).
 */
async function drainWithWorker(
  run: Run,
  config: ServiceConfig,
  serverPid: number | undefined,
  watcher: RowWatcher,
  admitted: number,
) {
  let drainMeter: Promise<PhaseCpu> | undefined
  const spawnedAt = nowMs()
  const worker = startWorker(config, join(run.logDir, 'writer-worker.log'))
  const roles = () => ({ worker: worker.pid, server: serverPid })
  watcher.onFirstRow(() => {
    drainMeter = PhaseCpu.start(run, roles)
  })
  const cpu = await PhaseCpu.start(run, roles)
  // The worker's CPU is read while it still runs.
  return withChild(run, worker, async () => {
    const watch = await watcher.finish(admitted, 300_000)
    const drainCpu = drainMeter === undefined ? undefined : await (await drainMeter).stop(run)
    return { watch, cpuUse: await cpu.stop(run), drainCpu, spawnedAt }
  })
}

/** The writer's floor (bench/lib/writer-floor.ts) on a coupon of its own, or why it could not be measured. */
async function writerFloor(
  run: Run,
  admin: AdminClient,
  rows: number,
): Promise<Pick<WriterPhase, 'floor' | 'floorError'>> {
  const errors: string[] = []
  const floor = await attempt(errors, 'writer floor', async () =>
    measureWriterFloor({
      databaseUrl: run.options.databaseUrl,
      schema: run.schema,
      couponId: await admin.createCoupon('stream', rows, 'writer floor'),
      rows,
      redis: run.redis.redis,
      ...(run.privateRedis ? { redisPid: run.privateRedis.pid } : {}),
      prefix: run.redisPrefix,
    }),
  )
  return floor === undefined ? { floorError: errors[0] } : { floor }
}

/** The writer alone drains a stream already filled with `writerRows` accepted entries. */
async function runWriterPhase(run: Run): Promise<WriterPhase> {
  const { options } = run
  const rows = options.writerRows
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const config = serviceConfig(run, port, { runWorkers: false })
  const server = await startServer(config, join(run.logDir, 'writer-api.log'))
  return withChild(run, server, async (scope) => {
    const admin = new AdminClient(baseUrl, run.adminToken)
    const couponId = await admin.createCoupon('stream', rows, 'writer goal')
    const admitStart = nowMs()
    const { go } = await runLoad(
      run,
      job(run, 'closed', baseUrl, couponId, `writer-${run.id}-`, {
        users: rows,
        repeatRatio: 0,
        durationSec: 600,
        collectAccepted: true,
      }),
      'admitting for the writer (workers paused)',
    )
    const admission = await go()
    const admitted = new Set(admission.accepted.users).size
    const db = scope.add(new BenchDb(options.databaseUrl, run.schema), (item) => item.close())
    const redisBefore = await run.redis.commandStats()
    const pgBefore = await databaseTransactions(options.databaseUrl)
    const watcher = scope.add(new RowWatcher(db, couponId, 5), (item) => item.cancel())
    const { watch, cpuUse, drainCpu, spawnedAt } = await drainWithWorker(
      run,
      config,
      server.pid,
      watcher,
      admitted,
    )
    const redisAfter = await run.redis.commandStats()
    const audit = await auditCoupon(db, couponId, rows, 'stream', admission)
    await db.close()
    const pgAfter = await databaseTransactions(options.databaseUrl)
    const floor = await writerFloor(run, admin, rows)
    const drainMs =
      watch.firstRowSeenAtMs !== undefined && watch.lastRowSeenAtMs !== undefined
        ? watch.lastRowSeenAtMs - watch.firstRowSeenAtMs
        : undefined
    const rowsPerSecond =
      drainMs !== undefined && drainMs > 0 ? (admitted - watch.firstCount) / (drainMs / 1000) : undefined
    const fromSpawnMs = watch.lastRowSeenAtMs !== undefined ? watch.lastRowSeenAtMs - spawnedAt : undefined
    const commands = [...commandDelta(redisBefore, redisAfter).values()].reduce(
      (sum, calls) => sum + calls,
      0,
    )
    const phase: WriterPhase = {
      rows,
      admitted,
      admissionSeconds: (admission.lastResponseAtMs - admitStart) / 1000,
      admissionRps: admission.rps,
      reached: watch.reached,
      firstRowAfterSpawnMs:
        watch.firstRowSeenAtMs === undefined ? undefined : watch.firstRowSeenAtMs - spawnedAt,
      firstCount: watch.firstCount,
      drainMs,
      rowsPerSecond,
      rowsPerSecondFromSpawn: fromSpawnMs ? admitted / (fromSpawnMs / 1000) : undefined,
      postgresTransactionsPerRow: admitted > 0 ? (pgAfter - pgBefore - db.queries - 1 - 2) / admitted : 0,
      redisCommandsPerRow: admitted > 0 ? commands / admitted : 0,
      audit,
      cpu: cpuUse,
      ...(drainCpu === undefined ? {} : { drainCpu }),
      ...floor,
    }
    say(
      `  writer alone              ${fmt(admitted)} entries drained in ${fmt((drainMs ?? 0) / 1000, 2)} s: ` +
        `${fmt(rowsPerSecond ?? 0)} rows/s (${fmt(phase.rowsPerSecondFromSpawn ?? 0)} rows/s counting the worker's start)`,
    )
    return phase
  })
}

/**
 * What fsync costs: the `stream` closed-loop sale against three redis-server processes of the run's own,
 * each on a free port with an empty temp data folder (never the machine's or the project's Redis).
 */
async function runDurability(run: Run): Promise<DurabilityRun[]> {
  const runs: DurabilityRun[] = []
  for (const persistence of ['none', 'everysec', 'always', 'replica-ack'] as Persistence[]) {
    const label = `stream-redis-${persistence}`
    let own: { url: string; service: ChildService } | undefined
    let replica: { url: string; service: ChildService } | undefined
    let redis: BenchRedis | undefined
    try {
      own = await startPrivateRedis(
        join(run.logDir, `${label}-redis.log`),
        persistence === 'replica-ack' ? 'none' : persistence,
      )
      run.children.add(own.service)
      const extra: Partial<ServiceConfig> = { redisUrl: own.url }
      if (persistence === 'replica-ack') {
        replica = await startPrivateRedis(join(run.logDir, `${label}-replica.log`), 'none', [
          '--replicaof',
          '127.0.0.1',
          new URL(own.url).port,
        ])
        run.children.add(replica.service)
        await replicaOnline(own.url)
        extra.extra = { REDIS_REPLICA_ACK: '1' }
      }
      redis = new BenchRedis(own.url)
      // Stock for every user: every request is an admission, a write to Redis and its AOF.
      const { users } = run.options
      const sale = await closedSale(run, 'stream', label, extra, redis, own.service.pid, users)
      if (typeof sale === 'string') throw new Error(sale)
      runs.push({ persistence, status: 'ok', phase: sale.closed })
    } catch (error) {
      const reason = (error as Error).message.split('\n')[0]!
      say(`  ${label}: FAILED: ${reason}`)
      runs.push({ persistence, status: 'failed', reason })
    } finally {
      await redis?.close()
      for (const server of [replica, own]) {
        if (server === undefined) continue
        await server.service.stop()
        run.children.delete(server.service)
      }
    }
  }
  return runs
}

/** Waits until the Redis at `url` has a replica online (INFO replication), so WAIT 1 can be answered. */
async function replicaOnline(url: string): Promise<void> {
  const port = new URL(url).port
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    const info = spawnSync('redis-cli', ['-p', port, 'info', 'replication'], { encoding: 'utf8' }).stdout
    if (/slave0:.*state=online/.test(info)) return
    await sleep(100)
  }
  throw new Error(`the replica of ${url} did not come online`)
}

/** --render: the figures come from the run's JSON as measured; only the report around them is rebuilt. */
async function render(file: string): Promise<void> {
  let report: BenchReport
  try {
    report = JSON.parse(await readFile(file, 'utf8')) as BenchReport
  } catch (error) {
    throw new UsageError(`--render: cannot read ${file}: ${(error as Error).message.split('\n')[0]}`)
  }
  if (report.version !== 1 || !Array.isArray(report.modes))
    throw new UsageError(`--render: ${file} is not a benchmark result`)
  report.goals = evaluateGoals(report)
  const files = await writeReports(report, stampOf(new Date(report.startedAt)), true)
  printSummary(report)
  say(`\nwrote ${files.join(', ')}`)
}

function stampOf(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')
}

/** The run's services and names: a Redis of its own (unless --redis-url), the database, schema and keys. */
async function openRun(options: Options, stamp: string, hex: string, logDir: string): Promise<Run> {
  const needsRedisServer = options.redisUrl === undefined || !options.skipDurability
  if (needsRedisServer && !hasCommand('redis-server'))
    throw new Error(
      'redis-server is not installed: give --redis-url (command counts then include other clients) and --skip-durability',
    )
  let privateRedis: { url: string; service: ChildService } | undefined
  let redisUrl = options.redisUrl
  if (redisUrl === undefined) {
    privateRedis = await startPrivateRedis(join(logDir, 'redis.log'))
    redisUrl = privateRedis.url
  }
  const createdDatabase = await createDatabaseIfMissing(options.databaseUrl)
  const run: Run = {
    options,
    id: hex,
    logDir,
    redisUrl,
    privateRedis: privateRedis?.service,
    createdDatabase,
    redis: new BenchRedis(redisUrl),
    schema: `bench_${stamp.replace('-', '_')}_${hex}`,
    redisPrefix: `bench:${hex}:`,
    jwtSecret: randomBytes(32).toString('base64url'),
    adminToken: randomBytes(24).toString('base64url'),
    children: new Set(),
    loads: new Set(),
  }
  if (privateRedis) run.children.add(privateRedis.service)
  return run
}

/** Leaves things as they were: no server, Redis, schema, keys (or database the run created) behind. */
async function cleanUp(run: Run): Promise<void> {
  const { options } = run
  for (const load of run.loads) load.kill()
  for (const child of [...run.children].reverse()) await child.stop(5_000).catch(() => {})
  await run.redis.close()
  if (options.keep) return
  if (run.createdDatabase) await dropDatabase(options.databaseUrl).catch(() => {})
  else await dropSchema(options.databaseUrl, run.schema).catch(() => {})
  if (!run.privateRedis) {
    const redis = new BenchRedis(run.redisUrl)
    await redis.deleteByPrefix(run.redisPrefix).catch(() => 0)
    await redis.close()
  }
}

/** Cores other processes keep busy before the benchmark adds anything (other test suites, brokers...). */
async function busyBeforeRun(): Promise<number> {
  const quiet = new CpuMeter(() => ({}))
  await sleep(1_000)
  const before = quiet.stop()
  if (before.busy > 0.3)
    say(
      `  note: the machine is already busy (${before.busy} of ${before.machineCores} cores in use by other processes): figures will be lower and noisier`,
    )
  return before.busy
}

/** Every subject of --modes in turn; a mode that fails is reported as failed and the run goes on. */
async function runModes(run: Run): Promise<ModeReport[]> {
  if (run.options.subjects.includes('kafka')) {
    run.kafka = kafkaBroker()
    say(run.kafka ? `  Kafka broker up at ${run.kafka}` : '  no Kafka broker running: kafka is skipped')
  }
  const modes: ModeReport[] = []
  for (const subject of run.options.subjects) {
    try {
      modes.push(subject === 'bare' ? await runBare(run) : await runMode(run, subject))
    } catch (error) {
      const message = error instanceof Error ? error.message.split('\n')[0]! : String(error)
      say(`  ${subject}: FAILED: ${message}`)
      modes.push({ mode: subject, status: 'failed', reason: message })
    }
  }
  return modes
}

/** Workload B of the stage table: `stream` with stock for every user, so every request is an admission. */
async function runAllAdmitted(run: Run): Promise<PhaseReport> {
  const { users } = run.options
  const sale = await closedSale(run, 'stream', 'stream-all-admitted', {}, run.redis, undefined, users)
  if (typeof sale === 'string') throw new Error(sale)
  return sale.closed!
}

/**
 * Workload B between two closed loops on the bare route: the machine's speed swings by half or more over
 * minutes (the same code ran B at 14,836 and 6,117 requests/s in two runs, the server 0.90 and 0.92 of a core
 * busy), so B's CPU per row is stated next to the bare route's measured in the same minutes.
 */
async function runAllAdmittedWithBare(
  run: Run,
): Promise<{ allAdmitted: PhaseReport; allAdmittedBare: AllAdmittedBare }> {
  return withBareServer(run, 'all-admitted-bare', undefined, async (measure) => {
    const beside = (when: string) => measure('closed', `bare-${when}-b-${run.id}-`, `bare ${when} B`)
    const before = await beside('before')
    const allAdmitted = await runAllAdmitted(run)
    return { allAdmitted, allAdmittedBare: { before, after: await beside('after') } }
  })
}

/** The search steps beyond the goal phase (which is its first step), each a phase of its own. */
const RATE_SEARCH_STEPS = 5

function rateStep(phase: GoalPhase): RateStep {
  return {
    rate: phase.rate,
    seconds: phase.seconds,
    sent: phase.load.sent,
    answered: phase.load.rps,
    rowP99Ms: phase.requestToRowObserved.p99,
    rowP99CommittedMs: phase.requestToRowCommitted.p99,
    met: phase.requestToRowObserved.p99 < ROW_P99_LIMIT_MS && phase.load.saturatedAtSec === undefined,
  }
}

/** From the goal phase at --rate, up (or down) by a quarter until request → row p99 crosses the limit. */
async function runRateSearch(run: Run, goal: GoalPhase): Promise<RateStep[]> {
  const steps = [rateStep(goal)]
  for (
    let rate = nextRate(steps, RATE_SEARCH_STEPS);
    rate !== undefined;
    rate = nextRate(steps, RATE_SEARCH_STEPS)
  )
    steps.push(rateStep(await runGoalPhase(run, rate, `search${steps.length}`)))
  const best = highestRateMet(steps)
  say(
    `  all-admitted rate search: ${best === undefined ? 'no rate met' : `${fmt(best)}/s`} with request-to-row p99 < ${ROW_P99_LIMIT_MS} ms`,
  )
  return steps
}

/** Runs one goal phase; a failure is noted in `errors` and the run goes on. */
async function attempt<T>(errors: string[], what: string, body: () => Promise<T>): Promise<T | undefined> {
  try {
    return await body()
  } catch (error) {
    errors.push(`${what} failed: ${(error as Error).message.split('\n')[0]}`)
    say(`  ${errors.at(-1)}`)
    return undefined
  }
}

type GoalPhases = Pick<
  BenchReport,
  'goal' | 'writer' | 'goalErrors' | 'allAdmitted' | 'allAdmittedBare' | 'rateSearch'
>

/**
 * The `stream` goal phases, when stream ran and goals are on: every request admitted (workload B of the
 * stage table), request-to-row at --rate and the rate search from there, the writer alone.
 */
async function runGoals(run: Run, modes: ModeReport[]): Promise<GoalPhases> {
  const goalErrors: string[] = []
  const streamOk = modes.some((mode) => mode.mode === 'stream' && mode.status === 'ok')
  if (run.options.skipGoals || !streamOk) return { goalErrors }
  const withBare = await attempt(goalErrors, 'all-admitted phase', () => runAllAdmittedWithBare(run))
  const { allAdmitted, allAdmittedBare } = withBare ?? {}
  const goal = await attempt(goalErrors, 'request-to-row phase', () => runGoalPhase(run))
  const rateSearch =
    goal && !run.options.skipRateSearch
      ? await attempt(goalErrors, 'rate search', () => runRateSearch(run, goal))
      : undefined
  const writer = await attempt(goalErrors, 'writer phase', () => runWriterPhase(run))
  return { goal, writer, goalErrors, allAdmitted, allAdmittedBare, rateSearch }
}

/** The settings the report states next to its figures. */
function settingsOf(run: Run, busyCoresBeforeRun: number): BenchReport['settings'] {
  const { options } = run
  return {
    users: options.users,
    quantity: options.quantity,
    connections: options.connections,
    durationSec: options.duration,
    rate: options.rate,
    openDurationSec: options.openDuration,
    writerRows: options.writerRows,
    repeatRatio: options.repeat,
    quick: options.quick,
    redis: run.privateRedis
      ? 'a redis-server of the run (no persistence) on a free port, started by the benchmark'
      : `${run.redisUrl} (command counts include any other client of it)`,
    database: run.createdDatabase
      ? `${options.databaseUrl} (created by the run, so \`pg_stat_database\` sees the benchmark alone; dropped at the end)`
      : `${options.databaseUrl} (transaction counts include any other client of that database)`,
    kafka: run.kafka ?? null,
    queueDrainCron: '* * * * * * (the default: every second)',
    busyCoresBeforeRun,
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2))
  if (options === undefined) return
  if (options.render !== undefined) return render(options.render)
  const startedAt = Date.now()
  const stamp = stampOf(new Date(startedAt))
  const hex = randomBytes(3).toString('hex')
  const logDir = mkdtempSync(join(tmpdir(), `coupon-rush-bench-${stamp}-`))
  const machine = machineInfo()
  say(
    `coupon-rush bench ${options.quick ? '(quick) ' : ''}— ${machine.cpus} CPUs (${machine.cpuModel}), ` +
      `${machine.memoryGiB} GiB, Node ${machine.node}; logs in ${logDir}`,
  )
  const run = await openRun(options, stamp, hex, logDir)

  let interrupted = false
  const onSignal = () => {
    if (interrupted) process.exit(130)
    interrupted = true
    say('bench: interrupted, cleaning up')
    cleanUp(run).finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const busyBefore = await busyBeforeRun()
  try {
    const modes = await runModes(run)
    const roundErrors: string[] = []
    const bothRan = ['bare', 'stream'].every((name) =>
      modes.some((mode) => mode.mode === name && mode.status === 'ok'),
    )
    const soldOutRounds =
      bothRan && options.soldOutRounds > 0
        ? await attempt(roundErrors, 'goal A rounds', () => runSoldOutRounds(run))
        : undefined
    const { goal, writer, goalErrors, allAdmitted, allAdmittedBare, rateSearch } = await runGoals(run, modes)
    const durability = options.skipDurability ? undefined : await runDurability(run)
    const report: BenchReport = {
      version: 1,
      startedAt: new Date(startedAt).toISOString(),
      seconds: (Date.now() - startedAt) / 1000,
      command: `npm run bench${options.argv.length > 0 ? ` -- ${options.argv.join(' ')}` : ''}`,
      machine,
      settings: settingsOf(run, busyBefore),
      modes,
      goal,
      writer,
      allAdmitted,
      allAdmittedBare,
      rateSearch,
      soldOutRounds,
      durability,
      goalErrors: [...roundErrors, ...goalErrors],
      goals: [],
    }
    report.goals = evaluateGoals(report)
    const files = await writeReports(report, stamp, options.publish)
    printSummary(report)
    say(`\nwrote ${files.join(', ')}  (${fmt(report.seconds, 0)} s)`)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    if (!interrupted) await cleanUp(run)
  }
}

runMain('bench', main)
