/**
 * The benchmark's report: the goals judged from the measured figures (never edited by hand), and the files:
 * bench/results/<time>.{json,md,svg} with latest.* copies, and docs/benchmarks.md.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CpuUse } from './cpu.ts'
import { type MachineInfo, ROOT } from './infra.ts'
import type { LatencySummary, LoadResult } from './load-protocol.ts'
import type { Audit } from './probes.ts'

export type LoadSummary = Omit<LoadResult, 'accepted' | 'soldOutUsers'> & {
  acceptedCount: number
  soldOutCount: number
}

export function stripLoad(result: LoadResult): LoadSummary {
  const { accepted, soldOutUsers, ...rest } = result
  return { ...rest, acceptedCount: accepted.users.length, soldOutCount: soldOutUsers.length }
}

export interface PhaseReport {
  couponId?: number
  quantity?: number
  load: LoadSummary
  /** All expected rows were seen in Postgres. */
  rowsReached: boolean
  /** First request sent -> the poll that saw the last expected row. */
  timeToLastRowMs?: number
  /** First request sent -> the latest issued_at (the writer's transaction start). */
  timeToLastIssuedAtMs?: number
  audit?: Audit
  cpu: CpuUse
}

export interface ModeReport {
  mode: string
  status: 'ok' | 'skipped' | 'failed'
  reason?: string
  closed?: PhaseReport
  open?: PhaseReport
  redis?: {
    commands: number
    scriptCalls: number
    perIssued: number
    perRequest: number
    byCommand: Record<string, number>
  }
  postgres?: { transactions: number; perIssued: number; perRequest: number }
  deadLettered?: number
}

export interface GoalPhase {
  rate: number
  seconds: number
  couponId: number
  load: LoadSummary
  audit: Audit
  /** Client send -> the poll that first saw the row (upper bound, 10 ms polls). */
  requestToRowObserved: LatencySummary
  /** Client send -> issued_at (lower bound: issued_at is the writer transaction's start). */
  requestToRowCommitted: LatencySummary
  cpu: CpuUse
}

export interface WriterPhase {
  rows: number
  admitted: number
  admissionSeconds: number
  admissionRps: number
  reached: boolean
  firstRowAfterSpawnMs?: number
  drainMs?: number
  rowsPerSecond?: number
  rowsPerSecondFromSpawn?: number
  postgresTransactionsPerRow: number
  redisCommandsPerRow: number
  audit: Audit
  cpu: CpuUse
}

export interface Goal {
  title: string
  target: string
  measured: string
  /** null: not measured in this run, or a comparison without a threshold. */
  met: boolean | null
  detail: string
}

export interface BenchReport {
  version: 1
  startedAt: string
  seconds: number
  command: string
  machine: MachineInfo
  settings: Record<string, string | number | boolean | null>
  modes: ModeReport[]
  goal?: GoalPhase
  writer?: WriterPhase
  goalErrors: string[]
  goals: Goal[]
}

const n0 = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: 0 })
const n1 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 })
const n2 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 2, minimumFractionDigits: 2 })
const pct = (value: number) => `${Math.round(value * 100)}%`
const seconds = (ms: number | undefined) => (ms === undefined ? '—' : `${n2(ms / 1000)} s`)
const ms = (value: number | undefined) => (value === undefined ? '—' : n1(value))

function okMode(report: BenchReport, mode: string): ModeReport | undefined {
  return report.modes.find((item) => item.mode === mode && item.status === 'ok')
}

function allAudits(report: BenchReport): { label: string; audit: Audit }[] {
  const audits: { label: string; audit: Audit }[] = []
  for (const mode of report.modes) {
    if (mode.closed?.audit) audits.push({ label: `${mode.mode} closed loop`, audit: mode.closed.audit })
    if (mode.open?.audit) audits.push({ label: `${mode.mode} open loop`, audit: mode.open.audit })
  }
  if (report.goal) audits.push({ label: 'stream request-to-row phase', audit: report.goal.audit })
  if (report.writer) audits.push({ label: 'stream writer phase', audit: report.writer.audit })
  return audits
}

function ratioGoal(
  title: string,
  target: number,
  measured: number | undefined,
  what: string,
  missing: string,
): Goal {
  if (measured === undefined) return { title, target: `≥ ${what}`, measured: '—', met: null, detail: missing }
  const met = measured >= target
  // Close to the target, one decimal would hide which side it fell on.
  const close = Math.abs(measured / target - 1) < 0.01
  const times = (value: number) =>
    `${value.toLocaleString('en-US', { maximumFractionDigits: close ? 2 : 1, minimumFractionDigits: close ? 2 : 1 })}×`
  const percent = (value: number) =>
    `${(value * 100).toLocaleString('en-US', { maximumFractionDigits: close ? 1 : 0 })}%`
  const shown = target >= 1 ? times(measured) : percent(measured)
  const goal = target >= 1 ? `${target}×` : percent(target)
  return {
    title,
    target: `≥ ${what}`,
    measured: shown,
    met,
    detail: met
      ? `met (${shown} against ${goal})`
      : `missed by ${percent(1 - measured / target)} of the target (${shown} instead of ${goal})`,
  }
}

/** The server process's CPU time per answered request in a mode's closed loop (µs). */
function serverMicrosPerRequest(mode: ModeReport | undefined): number | undefined {
  const c = mode?.closed
  if (!c || c.load.completed === 0 || c.cpu.roles.server === undefined) return undefined
  return (c.cpu.roles.server * c.cpu.seconds * 1e6) / c.load.completed
}

/** A second view of a throughput ratio that other processes on a shared machine barely move: CPU per request. */
function cpuView(stream: ModeReport | undefined, other: ModeReport | undefined, name: string): string {
  const a = serverMicrosPerRequest(stream)
  const b = serverMicrosPerRequest(other)
  if (a === undefined || b === undefined) return ''
  const relation =
    a >= b ? `stream needs ${n1(a / b)}× the CPU of ${name}` : `${name} needs ${n1(b / a)}× the CPU of stream`
  return (
    `. Server CPU per request (a view other processes on the machine barely move): stream ${n0(a)} µs, ` +
    `${name} ${n0(b)} µs — ${relation}`
  )
}

/** The goals of issues 5 and 3, judged only from the figures of this run. */
export function evaluateGoals(report: BenchReport): Goal[] {
  const goals: Goal[] = []
  const stream = okMode(report, 'stream')
  const sync = okMode(report, 'sync')
  const bare = okMode(report, 'bare')
  const queue = okMode(report, 'queue')
  const streamRps = stream?.closed?.load.rps
  const skippedWhy = (mode: string) => {
    const item = report.modes.find((entry) => entry.mode === mode)
    return item ? `${mode} ${item.status}${item.reason ? `: ${item.reason}` : ''}` : `${mode} not run`
  }
  const withCpu = (goal: Goal, other: ModeReport | undefined, name: string): Goal =>
    goal.met === null ? goal : { ...goal, detail: goal.detail + cpuView(stream, other, name) }
  goals.push(
    withCpu(
      ratioGoal(
        '`stream` admission req/s against `sync` (closed loop)',
        25,
        streamRps !== undefined && sync?.closed ? streamRps / sync.closed.load.rps : undefined,
        '25 × sync',
        `not measured: ${stream ? skippedWhy('sync') : skippedWhy('stream')}`,
      ),
      sync,
      'sync',
    ),
  )
  goals.push(
    withCpu(
      ratioGoal(
        '`stream` admission req/s against the bare Fastify route (closed loop)',
        0.7,
        streamRps !== undefined && bare?.closed ? streamRps / bare.closed.load.rps : undefined,
        '70% of bare',
        `not measured: ${stream ? skippedWhy('bare') : skippedWhy('stream')}`,
      ),
      bare,
      'bare',
    ),
  )
  {
    const q = queue?.closed
    const s = stream?.closed
    const title = '`queue` time to row (default 1 s schedule) against `stream`'
    if (q?.timeToLastRowMs !== undefined && s?.timeToLastRowMs !== undefined && q.audit && s.audit) {
      goals.push({
        title,
        target: 'comparison',
        measured:
          `last row ${seconds(q.timeToLastRowMs)} vs ${seconds(s.timeToLastRowMs)}; ` +
          `request→row p50 ${ms(q.audit.requestToRow.p50)} vs ${ms(s.audit.requestToRow.p50)} ms, ` +
          `p99 ${ms(q.audit.requestToRow.p99)} vs ${ms(s.audit.requestToRow.p99)} ms`,
        met: null,
        detail:
          `queue's request→row p99 is ${n1(q.audit.requestToRow.p99 / Math.max(s.audit.requestToRow.p99, 0.001))}× stream's at the 1 s schedule. ` +
          "With the seed's schedule `0 */10 * * * *` every queued request also waits for the next 10-minute mark: " +
          'that adds up to ten minutes (600 s; about 300 s on average) to queue, on top of the figures here; the benchmark states it instead of waiting it out.',
      })
    } else {
      goals.push({
        title,
        target: 'comparison',
        measured: '—',
        met: null,
        detail: `not measured: ${queue ? skippedWhy('stream') : skippedWhy('queue')}. With the seed's schedule \`0 */10 * * * *\` queue would wait up to ten more minutes per request (not waited out).`,
      })
    }
  }
  {
    const audits = allAudits(report)
    const dup = audits.filter(({ audit }) => audit.duplicateRows + audit.doubleAccepted > 0)
    const over = audits.filter(({ audit }) => audit.overIssued > 0)
    const measuredModes = [...new Set(audits.map(({ label }) => label.split(' ')[0]))]
    goals.push({
      title: 'Zero duplicates and zero over-issue in every mode',
      target: '0 and 0',
      measured: `${dup.reduce((sum, { audit }) => sum + audit.duplicateRows + audit.doubleAccepted, 0)} duplicates, ${over.reduce((sum, { audit }) => sum + audit.overIssued, 0)} over-issued`,
      met: audits.length === 0 ? null : dup.length === 0 && over.length === 0,
      detail:
        audits.length === 0
          ? 'nothing audited'
          : dup.length === 0 && over.length === 0
            ? `met in ${audits.length} audited sales (${measuredModes.join(', ')})`
            : `MISSED in ${[...dup, ...over].map(({ label }) => label).join(', ')}`,
    })
    const unfair = audits.filter(({ audit }) => !audit.fcfs || audit.positionsExact === false)
    const lost = audits.filter(({ audit }) => audit.soldOutWithRow > 0 || audit.rowsWithoutAcceptance > 0)
    goals.push({
      title: 'FCFS: the issued users are exactly the admitted (queue: the first by position); nothing lost',
      target: 'every sale',
      measured: `${audits.length - unfair.length - lost.length} of ${audits.length} sales`,
      met: audits.length === 0 ? null : unfair.length === 0 && lost.length === 0,
      detail:
        unfair.length === 0 && lost.length === 0
          ? 'met'
          : `MISSED in ${[...unfair, ...lost].map(({ label, audit }) => `${label} (${audit.problems.join('; ')})`).join(', ')}`,
    })
  }
  {
    const goal = report.goal
    const title = 'Issue 3: request-to-row p99 under 250 ms at 10,000 requests/s (stream)'
    if (goal) {
      const sentRate = goal.load.achievedSendRate ?? 0
      const answered = goal.load.rps
      const reachedRate = sentRate >= goal.rate * 0.95 && answered >= goal.rate * 0.95
      const p99 = goal.requestToRowObserved.p99
      const fast = p99 < 250
      const rateNote = goal.rate === 10_000 ? '' : ` (this run asked for ${n0(goal.rate)}/s, not 10,000/s)`
      // What stream does at a rate it can take, from its open-loop phase (every admitted request there a row).
      const open = stream?.open
      const sustainable =
        open?.audit && open.load.offeredRate
          ? `. At ${n0(open.load.offeredRate)}/s (70% of what it took closed-loop on this machine) request-to-row p99 was ` +
            `${n1(open.audit.requestToRow.p99)} ms (issued_at) for its ${n0(open.audit.rows)} rows`
          : ''
      goals.push({
        title,
        target: 'p99 < 250 ms at 10,000/s',
        measured: `p99 ${n1(p99)} ms (seen by poll; ${n1(goal.requestToRowCommitted.p99)} ms by issued_at) at ${n0(answered)} answers/s`,
        met: reachedRate && fast && goal.rate >= 10_000,
        detail: !reachedRate
          ? `missed: the rate was not reached — ${n0(answered)} answered/s of ${n0(goal.rate)}/s asked (${pct(answered / goal.rate)}, short by ${pct(1 - answered / goal.rate)})` +
            (goal.load.saturatedAtSec === undefined
              ? ''
              : `; the server fell over 1 s behind after ${n1(goal.load.saturatedAtSec)} s, so sending stopped (${n0(goal.load.sent)} of ${n0(goal.load.planned ?? 0)} arrivals)`) +
            `; request-to-row p99 of what was sent: ${n1(p99)} ms${fast ? '' : ` (${n1(p99 / 250)}× the 250 ms bound)`}${rateNote}${sustainable}`
          : fast
            ? `met${rateNote}`
            : `missed by ${n0(p99 - 250)} ms (p99 ${n1(p99)} ms against 250 ms)${rateNote}`,
      })
    } else {
      goals.push({
        title,
        target: 'p99 < 250 ms',
        measured: '—',
        met: null,
        detail:
          report.goalErrors.find((error) => error.startsWith('request')) ??
          'not run (needs stream; see --skip-goals)',
      })
    }
  }
  {
    const writer = report.writer
    const title = 'Issue 3: the writer alone sustains at least 50,000 rows/s (stream)'
    if (writer?.rowsPerSecond !== undefined) {
      const met = writer.rowsPerSecond >= 50_000 && writer.reached
      goals.push({
        title,
        target: '≥ 50,000 rows/s',
        measured: `${n0(writer.rowsPerSecond)} rows/s over ${n0(writer.admitted)} rows`,
        met,
        detail: met
          ? `met (${pct(writer.rowsPerSecond / 50_000)} of the target)`
          : `missed by ${pct(1 - writer.rowsPerSecond / 50_000)} (${n0(writer.rowsPerSecond)} rows/s)`,
      })
    } else {
      goals.push({
        title,
        target: '≥ 50,000 rows/s',
        measured: '—',
        met: null,
        detail:
          report.goalErrors.find((error) => error.startsWith('writer')) ??
          'not run (needs stream; see --skip-goals)',
      })
    }
  }
  return goals
}

const verdict = (goal: Goal) => (goal.met === null ? 'ℹ️ n/a' : goal.met ? '✅ met' : '❌ missed')

function statusSummary(load: LoadSummary): string {
  const counts = load.statusCounts
  const two = Object.entries(counts)
    .filter(([code]) => code.startsWith('2'))
    .reduce((sum, [, count]) => sum + count, 0)
  const other = Object.entries(counts)
    .filter(([code]) => !code.startsWith('2') && code !== '409' && code !== '410')
    .map(([code, count]) => `${code}: ${n0(count)}`)
  const errors = load.errors > 0 ? [`errors: ${n0(load.errors)}`] : []
  return [`${n0(two)} / ${n0(counts['409'] ?? 0)} / ${n0(counts['410'] ?? 0)}`, ...other, ...errors].join(
    ', ',
  )
}

function auditCells(audit: Audit | undefined): string[] {
  if (!audit) return ['—', '—', '—', '—']
  return [
    n0(audit.rows),
    n0(audit.duplicateRows + audit.doubleAccepted),
    n0(audit.overIssued),
    audit.fcfs && audit.positionsExact !== false && audit.soldOutWithRow === 0 ? 'ok' : '**FAILED**',
  ]
}

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n')
}

/** The report as Markdown; `level` is the heading level of its title. */
export function markdown(report: BenchReport, level = 1): string {
  const h = (depth: number, text: string) => `${'#'.repeat(level + depth - 1)} ${text}`
  const m = report.machine
  const s = report.settings
  const out: string[] = []
  out.push(h(1, `Coupon Rush benchmark — ${report.startedAt.slice(0, 16).replace('T', ' ')} UTC`))
  out.push('')
  out.push(
    `Reproduce with \`${report.command}\` (services up: Redis, Postgres; \`npm run kafka:start\` for the kafka mode). ` +
      `Machine: ${m.cpus} CPUs (\`nproc\`), ${m.cpuModel}, ${m.memoryGiB} GiB memory, Node ${m.node}, ${m.platform}; ` +
      `run on ${m.date.slice(0, 10)}, took ${n0(report.seconds)} s. Generated by \`bench/run.ts\`; the figures are never edited by hand.`,
  )
  out.push('')
  out.push(
    `> **${m.cpus} cores for everything.** The load generator (in its own process), the server under test, ` +
      'Redis and Postgres all share the same cores, so every figure here is a lower bound of what the server does on a machine of ' +
      'its own, and the ratios compare modes under the same handicap. The "Where the CPU went" table shows the split per phase, ' +
      'including CPU used by other processes on the machine at the time (other test suites, the Kafka broker).' +
      ` Before the run, other processes kept ${n2(Number(s.busyCoresBeforeRun ?? 0))} of ${m.cpus} cores busy.` +
      (Number(s.waitQuietSec ?? 0) > 0
        ? ` With \`--wait-quiet ${s.waitQuietSec}\` each measured phase first waited for other processes to use under 0.25 cores: ` +
          `${n1(Number(s.quietWaitSec ?? 0))} s of waiting in all${Number(s.quietTimeouts ?? 0) > 0 ? `, ${s.quietTimeouts} times in vain (the phase ran anyway)` : ''}.`
        : ''),
  )
  out.push('')
  const noisy = noisyPhases(report)
  if (noisy.length > 0) {
    out.push(
      `> ⚠️ **Noisy run**: other processes used more than 0.3 cores during ${noisy.join(', ')}; ` +
        'those figures are lower than on a quiet machine and the ratios between modes are less reliable. Re-run when the machine is idle.',
    )
    out.push('')
  }
  out.push(h(2, 'Goals'))
  out.push('')
  out.push(
    table(
      ['goal', 'target', 'measured', 'verdict', 'detail'],
      report.goals.map((goal) => [goal.title, goal.target, goal.measured, verdict(goal), goal.detail]),
    ),
  )
  out.push('')
  out.push(h(2, 'Modes side by side — closed loop (the flash sale)'))
  out.push('')
  out.push(
    `Each mode gets a fresh server process and a coupon of **${n0(Number(s.quantity))}**; **${n0(Number(s.users))} users** ` +
      `(${pct(Number(s.repeatRatio))} of them press twice) arrive over **${s.connections} keep-alive connections**, each connection ` +
      `sending its next request as soon as the previous is answered, until every user has asked or ${s.durationSec} s passed. ` +
      "Every request carries a different user's JWT. Answers are counted as 2xx / 409 ALREADY_REQUESTED / 410 SOLD_OUT " +
      '(2xx is 201 ISSUED in sync, 202 ACCEPTED in stream and kafka, 202 PENDING in queue, where only the first ' +
      `${n0(Number(s.quantity))} by position get a row). ` +
      '"First request → last row" is polled from Postgres (`coupons.issued_count`, every 10 ms). ' +
      '"Request → row" is `issued_at` minus the moment the client sent the request, per row.',
  )
  out.push('')
  const modeRows: string[][] = []
  for (const mode of report.modes) {
    if (mode.status !== 'ok' || !mode.closed) {
      modeRows.push([
        `\`${mode.mode}\``,
        `*${mode.status}*: ${mode.reason ?? ''}`,
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
      ])
      continue
    }
    const c = mode.closed
    modeRows.push([
      `\`${mode.mode}\``,
      `**${n0(c.load.rps)}**${c.load.cutByDuration ? ' (cut at duration)' : ''}`,
      ms(c.load.latency.p50),
      ms(c.load.latency.p99),
      ms(c.load.latency.p999),
      statusSummary(c.load),
      mode.mode === 'bare' ? '—' : seconds(c.timeToLastRowMs) + (c.rowsReached ? '' : ' (not all rows!)'),
      c.audit ? `${ms(c.audit.requestToRow.p50)} / ${ms(c.audit.requestToRow.p99)}` : '—',
      mode.redis ? n1(mode.redis.perIssued) : '—',
      mode.postgres ? n2(mode.postgres.perIssued) : '—',
      ...auditCells(c.audit),
    ])
  }
  out.push(
    table(
      [
        'mode',
        'req/s',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'answers 2xx / 409 / 410',
        'first request → last row',
        'request → row p50 / p99 ms',
        'Redis cmds / issued',
        'PG xacts / issued',
        'rows',
        'dup',
        'over',
        'FCFS',
      ],
      modeRows,
    ),
  )
  out.push('')
  out.push(
    '*Redis cmds / issued*: `INFO commandstats` delta over the closed-loop phase until the last row (commands run inside Lua ' +
      "scripts count, and so do the workers' polls) divided by the rows issued. *PG xacts / issued*: `pg_stat_database` " +
      "`xact_commit + xact_rollback` delta of the benchmark's own database over the same phase (read after the server " +
      "stopped, so every backend has reported), minus the benchmark's own queries, divided by the rows issued; it includes " +
      "the server's background loops (coupon refresh, scheduler) during the phase.",
  )
  out.push('')
  const breakdown = report.modes.filter((mode) => mode.status === 'ok' && mode.closed)
  if (breakdown.length > 0) {
    const perRequest = (mode: ModeReport, role: string) => {
      const c = mode.closed!
      const cores = c.cpu.roles[role] ?? 0
      return c.load.completed > 0 ? n0((cores * c.cpu.seconds * 1e6) / c.load.completed) : '—'
    }
    out.push(
      table(
        [
          'mode',
          'requests',
          'rows',
          'server CPU µs / request',
          'generator CPU µs / request',
          'Redis commands (top 6)',
          'Redis cmds / request',
          'PG xacts',
          'PG xacts / request',
        ],
        breakdown.map((mode) => [
          `\`${mode.mode}\``,
          n0(mode.closed?.load.completed ?? 0),
          mode.closed?.audit ? n0(mode.closed.audit.rows) : '—',
          perRequest(mode, 'server'),
          perRequest(mode, 'generator'),
          mode.redis
            ? Object.entries(mode.redis.byCommand)
                .slice(0, 6)
                .map(([command, calls]) => `${command} ${n0(calls)}`)
                .join(', ')
            : '—',
          mode.redis ? n2(mode.redis.perRequest) : '—',
          mode.postgres ? n0(mode.postgres.transactions) : '—',
          mode.postgres ? n2(mode.postgres.perRequest) : '—',
        ]),
      ),
    )
    out.push('')
    out.push(
      "*Server CPU µs / request*: the server process's CPU time over the phase (its background workers included) per answered " +
        'request — what each request costs beyond the bare route.',
    )
    out.push('')
  }
  out.push(h(2, 'Open loop — a fixed arrival rate'))
  out.push('')
  out.push(
    `Arrivals at a constant rate for ${s.openDurationSec} s, each a new user (${s.connections} keep-alive connections); ` +
      'latency counts from the *scheduled* arrival, so time spent queued in the client shows (no coordinated omission). Each mode runs at ' +
      `min(${n0(Number(s.rate))}/s, 70% of its own closed-loop req/s), so every mode is measured below its saturation point.`,
  )
  out.push('')
  out.push(
    table(
      [
        'mode',
        'offered /s',
        'sent /s',
        'answered /s',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'answers 2xx / 409 / 410',
        'first request → last row',
        'request → row p99 ms',
        'rows',
        'dup',
        'over',
        'FCFS',
      ],
      report.modes
        .filter((mode) => mode.open)
        .map((mode) => {
          const o = mode.open!
          return [
            `\`${mode.mode}\``,
            n0(o.load.offeredRate ?? 0),
            n0(o.load.achievedSendRate ?? 0) +
              (o.load.saturatedAtSec === undefined
                ? ''
                : ` (stopped after ${n1(o.load.saturatedAtSec)} s: over 2 s behind)`),
            n0(o.load.rps),
            ms(o.load.latency.p50),
            ms(o.load.latency.p99),
            ms(o.load.latency.p999),
            statusSummary(o.load),
            mode.mode === 'bare' ? '—' : seconds(o.timeToLastRowMs),
            o.audit ? ms(o.audit.requestToRow.p99) : '—',
            ...auditCells(o.audit),
          ]
        }),
    ),
  )
  out.push('')
  out.push(h(2, 'Issue 3 on `stream`: request-to-row at the target rate, and the writer alone'))
  out.push('')
  if (report.goal) {
    const g = report.goal
    out.push(
      `**Request to row at ${n0(g.rate)} requests/s** (open loop, ${g.seconds} s, ${n0(g.load.sent)} users, a coupon with enough ` +
        'stock for all of them, so every request becomes a row): ' +
        `sent ${n0(g.load.achievedSendRate ?? 0)}/s, answered ${n0(g.load.rps)}/s; HTTP latency p50 ${ms(g.load.latency.p50)} / ` +
        `p99 ${ms(g.load.latency.p99)} / p99.9 ${ms(g.load.latency.p999)} ms; client send lag p99 ${ms(g.load.sendLag?.p99)} ms.`,
    )
    out.push('')
    out.push(
      table(
        ['request → row (ms)', 'p50', 'p90', 'p99', 'p99.9', 'max'],
        [
          ['seen by a 10 ms poll (upper bound)', g.requestToRowObserved],
          ['issued_at, the writer transaction start (lower bound)', g.requestToRowCommitted],
          ['issued_at − requested_at as the server recorded them', g.audit.rowLatency],
        ].map(([label, summary]) => {
          const x = summary as LatencySummary
          return [label as string, ms(x.p50), ms(x.p90), ms(x.p99), ms(x.p999), ms(x.max)]
        }),
      ),
    )
    out.push('')
    out.push(
      `Audit: ${n0(g.audit.rows)} rows, ${n0(g.audit.duplicateRows + g.audit.doubleAccepted)} duplicates, ` +
        `${n0(g.audit.overIssued)} over-issued, FCFS ${auditCells(g.audit)[3]}.`,
    )
    out.push('')
  }
  if (report.writer) {
    const w = report.writer
    out.push(
      `**The writer alone**: an API server with \`RUN_WORKERS=false\` admitted ${n0(w.admitted)} users into one coupon's stream ` +
        `(${n0(w.admissionRps)} admissions/s with no writer running), then one \`coupon-rush worker\` process was started and ` +
        `Postgres polled every 5 ms: first rows ${seconds(w.firstRowAfterSpawnMs)} after the spawn, all rows ${seconds(w.drainMs)} later — ` +
        `**${n0(w.rowsPerSecond ?? 0)} rows/s** (${n0(w.rowsPerSecondFromSpawn ?? 0)} rows/s counting the worker's start-up); ` +
        `per row ${w.postgresTransactionsPerRow.toFixed(4)} Postgres transactions and ${n2(w.redisCommandsPerRow)} Redis commands. ` +
        `Audit: ${n0(w.audit.rows)} rows, ${n0(w.audit.duplicateRows + w.audit.doubleAccepted)} duplicates, ${n0(w.audit.overIssued)} over-issued, FCFS ${w.audit.fcfs && w.audit.positionsExact !== false ? 'ok' : 'FAILED'}.`,
    )
    out.push('')
  }
  for (const error of report.goalErrors) out.push(`- ${error}`)
  if (!report.goal && !report.writer && report.goalErrors.length === 0) out.push('Not run in this run.')
  out.push('')
  out.push(h(2, 'Where the CPU went'))
  out.push('')
  out.push(
    `Cores busy on average during each measured phase (of ${report.machine.cpus}), from /proc. *postgres* is the backends ` +
      'of the benchmark database; *irq + steal* is interrupt handling (mostly the loopback TCP traffic) and time the ' +
      'hypervisor gave to other machines; *other* is every other process on the machine (other test suites, the Kafka broker).',
  )
  out.push('')
  const cpuRows: string[][] = []
  const cpuRow = (label: string, cpu: CpuUse | undefined) => {
    if (!cpu) return
    const r = cpu.roles
    cpuRows.push([
      label,
      n1(cpu.seconds),
      n2(cpu.busy),
      n2((r.server ?? 0) + (r.worker ?? 0)),
      n2(r.generator ?? 0),
      n2(r.redis ?? 0),
      n2(r.postgres ?? 0),
      n2(r.bench ?? 0),
      n2(cpu.interrupts + cpu.steal),
      n2(cpu.other),
    ])
  }
  for (const mode of report.modes) {
    cpuRow(`\`${mode.mode}\` closed loop`, mode.closed?.cpu)
    cpuRow(`\`${mode.mode}\` open loop`, mode.open?.cpu)
  }
  cpuRow('`stream` request-to-row goal', report.goal?.cpu)
  cpuRow('`stream` writer alone (server = API + worker)', report.writer?.cpu)
  out.push(
    table(
      [
        'phase',
        's',
        'busy',
        'server',
        'load generator',
        'redis',
        'postgres',
        'bench pollers',
        'irq + steal',
        'other',
      ],
      cpuRows,
    ),
  )
  out.push('')
  const skipped = report.modes.filter((mode) => mode.status !== 'ok')
  if (skipped.length > 0) {
    out.push(h(2, 'Skipped or failed'))
    out.push('')
    for (const mode of skipped) out.push(`- \`${mode.mode}\`: ${mode.status} — ${mode.reason ?? ''}`)
    out.push('')
  }
  out.push(h(2, 'How it is measured'))
  out.push('')
  out.push(
    [
      '- The server under test is `node bin/coupon-rush.mjs serve`, started fresh for every phase with its own port; all phases share one Postgres schema and Redis key prefix of the run, dropped at the end. The bare route is `bench/bare-server.ts`, a separate Fastify process answering `POST /coupons/:id/issuance` with a small JSON (no auth, no Redis).',
      `- The load generator runs in its own process. Every request is a different user's: the JWTs (HS256, \`signUserToken\`) are signed and the requests pre-built before the measured window. Closed loop: ${s.generator === 'autocannon' ? '`bench/lib/closed-loop-child.ts` (autocannon, tokens rotated per request)' : '`bench/lib/raw-load-child.ts` (plain keep-alive sockets, `bench/lib/raw-http.ts`)'}, fixed connections, in-flight requests are awaited when the duration ends. Open loop: \`bench/lib/raw-load-child.ts\`, constant arrival rate, latency from the scheduled arrival, sending stops if the server falls more than 2 s (goal phase: 1 s) behind. The raw generator spends markedly less CPU per request than autocannon (its cost is the *generator CPU µs / request* column above), which matters when it shares ${report.machine.cpus} cores with the server; \`--generator autocannon\` switches the closed loop.`,
      '- Before each closed-loop phase the server is warmed up for about a second against a separate coupon of one unit (mostly the sold-out path), then Postgres statistics are flushed (see the PG footnote) and the counters are read.',
      `- Redis: ${s.redis}. Postgres: ${s.database} (its own database, so \`pg_stat_database\` sees the benchmark alone). Kafka: ${s.kafka ?? 'no broker running'}. Queue schedule: \`QUEUE_DRAIN_CRON\` default \`* * * * * *\` (every second).`,
      "- `queue` at the seed's 10-minute schedule (`0 */10 * * * *`) is not run: its requests would wait for the next 10-minute mark, up to 600 s more than the 1 s-schedule figures above; the report states it rather than waiting it out.",
      '- The audit reads Postgres directly: rows, duplicate rows, users admitted twice, rows over the quantity, `coupons.issued_count` against the rows; FCFS: the users holding rows are exactly those answered 2xx (`queue`: the first `quantity` by answered position), in `stream`/`kafka` the row positions are exactly 1..rows and equal the answered positions, and no user answered 410 holds a row.',
    ].join('\n'),
  )
  out.push('')
  return out.join('\n')
}

/** Phases during which other processes used more than 0.3 cores. */
export function noisyPhases(report: BenchReport): string[] {
  const phases: string[] = []
  const check = (label: string, cpu: CpuUse | undefined) => {
    if (cpu && cpu.other > 0.3) phases.push(`${label} (${n2(cpu.other)})`)
  }
  for (const mode of report.modes) {
    check(`${mode.mode} closed loop`, mode.closed?.cpu)
    check(`${mode.mode} open loop`, mode.open?.cpu)
  }
  check('the request-to-row phase', report.goal?.cpu)
  check('the writer phase', report.writer?.cpu)
  return phases
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** A simple horizontal bar chart in four panels: req/s, p99, first request → last row, request → row p99. */
export function svg(report: BenchReport): string {
  const modes = report.modes.filter((mode) => mode.status === 'ok' && mode.closed)
  const panels: { title: string; unit: string; values: [string, number | undefined][] }[] = [
    {
      title: 'Closed-loop admission throughput (req/s, higher is better)',
      unit: 'req/s',
      values: modes.map((mode) => [mode.mode, mode.closed!.load.rps]),
    },
    {
      title: 'Closed-loop latency p99 (ms, lower is better)',
      unit: 'ms',
      values: modes.map((mode) => [mode.mode, mode.closed!.load.latency.p99]),
    },
    {
      title: 'First request → last row in Postgres (s, lower is better)',
      unit: 's',
      values: modes
        .filter((mode) => mode.mode !== 'bare')
        .map((mode) => [
          mode.mode,
          mode.closed!.timeToLastRowMs === undefined ? undefined : mode.closed!.timeToLastRowMs / 1000,
        ]),
    },
    {
      title: 'Request → row p99 (ms, lower is better)',
      unit: 'ms',
      values: modes
        .filter((mode) => mode.mode !== 'bare')
        .map((mode) => [mode.mode, mode.closed!.audit?.requestToRow.p99]),
    },
  ]
  const width = 760
  const barHeight = 22
  const labelWidth = 80
  const colors: Record<string, string> = {
    bare: '#9e9e9e',
    sync: '#e4572e',
    queue: '#f3a712',
    stream: '#29335c',
    kafka: '#669bbc',
  }
  let y = 40
  const parts: string[] = [
    `<text x="16" y="24" font-size="16" font-weight="bold">${escapeXml(`Coupon Rush benchmark — ${report.startedAt.slice(0, 10)}, ${report.machine.cpus} CPUs, ${report.command}`)}</text>`,
  ]
  for (const panel of panels) {
    y += 14
    parts.push(`<text x="16" y="${y}" font-size="13" font-weight="bold">${escapeXml(panel.title)}</text>`)
    y += 8
    const max = Math.max(1, ...panel.values.map(([, value]) => value ?? 0))
    for (const [label, value] of panel.values) {
      const length = value === undefined ? 0 : Math.max(1, ((width - labelWidth - 140) * value) / max)
      parts.push(`<text x="16" y="${y + 15}" font-size="12">${escapeXml(label)}</text>`)
      parts.push(
        `<rect x="${labelWidth}" y="${y + 3}" width="${length.toFixed(1)}" height="${barHeight - 6}" fill="${colors[label] ?? '#555'}"/>`,
      )
      const text =
        value === undefined
          ? 'n/a'
          : `${value.toLocaleString('en-US', { maximumFractionDigits: value < 10 ? 2 : 0 })} ${panel.unit}`
      parts.push(
        `<text x="${(labelWidth + length + 6).toFixed(1)}" y="${y + 15}" font-size="12">${escapeXml(text)}</text>`,
      )
      y += barHeight
    }
    y += 10
  }
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}

const DOCS_HEADER = `# Benchmarks

\`npm run bench\` runs every issuance mode on the same flash-sale workload in one run, next to a bare Fastify
route, and checks the speed goals of issues 3 and 5; \`npm run bench -- --quick\` does the same in under two
minutes, and \`npm run bench -- --help\` lists the options. Each run writes
\`bench/results/<time>.{json,md,svg}\` and \`bench/results/latest.*\`, and rewrites this page from the run.
\`npm run demo\` shows one flash sale live in the terminal.

![benchmark chart](../bench/results/latest.svg)

`

/** Writes the JSON, Markdown and SVG (timestamped and latest.*) and, if asked, docs/benchmarks.md. */
export async function writeReports(report: BenchReport, stamp: string, docs: boolean): Promise<string[]> {
  const dir = join(ROOT, 'bench', 'results')
  await mkdir(dir, { recursive: true })
  const files: [string, string][] = [
    [`${stamp}.json`, `${JSON.stringify(report, null, 2)}\n`],
    [`${stamp}.md`, `${markdown(report)}\n`],
    [`${stamp}.svg`, svg(report)],
  ]
  const written: string[] = []
  for (const [name, content] of files) {
    await writeFile(join(dir, name), content)
    const latest = name.replace(stamp, 'latest')
    await copyFile(join(dir, name), join(dir, latest))
    written.push(`bench/results/${name}`)
  }
  if (docs) {
    await mkdir(join(ROOT, 'docs'), { recursive: true })
    await writeFile(join(ROOT, 'docs', 'benchmarks.md'), `${DOCS_HEADER}${markdown(report, 2)}\n`)
    written.push('docs/benchmarks.md')
  }
  return written
}

/** The short version for the terminal. */
export function printSummary(report: BenchReport): void {
  const lines: string[] = [
    '',
    'mode      req/s    p50 ms   p99 ms  p99.9 ms  last row   Redis/iss  PG/iss   rows  dup over FCFS',
  ]
  for (const mode of report.modes) {
    if (mode.status !== 'ok' || !mode.closed) {
      lines.push(`${mode.mode.padEnd(8)}  ${mode.status}: ${mode.reason ?? ''}`)
      continue
    }
    const c = mode.closed
    const a = c.audit
    lines.push(
      [
        mode.mode.padEnd(8),
        n0(c.load.rps).padStart(7),
        n1(c.load.latency.p50).padStart(8),
        n1(c.load.latency.p99).padStart(8),
        n1(c.load.latency.p999).padStart(9),
        (mode.mode === 'bare' ? '—' : seconds(c.timeToLastRowMs)).padStart(9),
        (mode.redis ? n1(mode.redis.perIssued) : '—').padStart(10),
        (mode.postgres ? n2(mode.postgres.perIssued) : '—').padStart(7),
        (a ? n0(a.rows) : '—').padStart(6),
        (a ? String(a.duplicateRows + a.doubleAccepted) : '—').padStart(4),
        (a ? String(a.overIssued) : '—').padStart(4),
        a ? (a.fcfs && a.positionsExact !== false ? ' ok' : ' FAILED') : ' —',
      ].join(' '),
    )
  }
  lines.push('')
  for (const goal of report.goals)
    lines.push(`${verdict(goal).padEnd(9)} ${goal.title.replaceAll('`', '')}: ${goal.detail}`)
  console.log(lines.join('\n'))
}
