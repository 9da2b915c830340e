/**
 * The benchmark's report: the run as data (BenchReport, saved as JSON), the values that fill the Markdown
 * template bench/report.md, an SVG chart, and the summary printed in the terminal.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CpuUse } from './cpu.ts'
import { WRITER_ROWS_PER_SECOND } from './goals.ts'
import { type MachineInfo, ROOT } from './infra.ts'
import type { LatencySummary, LoadResult } from './load-protocol.ts'
import { type Audit, fcfsHeld } from './probes.ts'
import { type RateStep, rateSearchText, soldOutRoundsText, stageTable } from './stages.ts'
import type { WriterFloor } from './writer-floor.ts'

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

/** One round of goal A's alternating measurement: three closed loops back to back, the same load each. */
export interface SoldOutRound {
  bare: PhaseReport
  tokenChecked: PhaseReport
  /** A `stream` sale of --quantity coupons to --users users (new ones each round). */
  soldOut: PhaseReport
}

/** The bare route's closed loop right before and right after workload B: the machine's speed in those minutes. */
export interface AllAdmittedBare {
  before: PhaseReport
  after: PhaseReport
}

export interface ModeReport {
  mode: string
  status: 'ok' | 'skipped' | 'failed'
  reason?: string
  closed?: PhaseReport
  open?: PhaseReport
  /** bare only: the same closed loop against the bare route that checks each token first (HS256). */
  tokenChecked?: PhaseReport
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
  /** Rows already there when the first row was seen (the drain's rows are the rest). */
  firstCount?: number
  drainMs?: number
  rowsPerSecond?: number
  rowsPerSecondFromSpawn?: number
  postgresTransactionsPerRow: number
  redisCommandsPerRow: number
  audit: Audit
  /** From the worker's spawn to the last row. */
  cpu: CpuUse
  /** From the first row seen to the last: the drain without the worker's start-up. */
  drainCpu?: CpuUse
  /** The insert and the stream's read-acknowledge-trim, each alone (bench/lib/writer-floor.ts). */
  floor?: WriterFloor
  floorError?: string
}

/** `replica-ack`: no persistence, one replica, and REDIS_REPLICA_ACK=1 (WAIT 1 after each admission batch). */
export type Persistence = 'none' | 'everysec' | 'always' | 'replica-ack'

/** The `stream` closed loop against a Redis of each persistence setting. */
export interface DurabilityRun {
  persistence: Persistence
  status: 'ok' | 'failed'
  reason?: string
  phase?: PhaseReport
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
  /** Workload B of the stage table: a `stream` closed loop with stock for every user, the writer running. */
  allAdmitted?: PhaseReport
  /** The bare route measured right before and after workload B. */
  allAdmittedBare?: AllAdmittedBare
  /** The all-admitted rate search (request → row p99 under 250 ms). */
  rateSearch?: RateStep[]
  /** Goal A in alternating rounds (bare, bare + token check, sold-out sale). */
  soldOutRounds?: SoldOutRound[]
  durability?: DurabilityRun[]
  goalErrors: string[]
  goals: Goal[]
}

const n0 = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: 0 })
const n1 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 })
const n2 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 2, minimumFractionDigits: 2 })
const seconds = (ms: number | undefined) => (ms === undefined ? '—' : `${n2(ms / 1000)} s`)
const ms = (value: number | undefined) => (value === undefined ? '—' : n1(value))
const verdict = (goal: Goal) => (goal.met === null ? 'ℹ️ n/a' : goal.met ? '✅ met' : '❌ missed here')

/** What each Redis setting survives (what the durability table says next to its figures). */
export const SURVIVES: Record<Persistence, string> = {
  none: 'nothing: a Redis restart loses every admission not yet in Postgres',
  everysec:
    'a Redis process crash (each write reaches the OS before the answer); a machine crash can lose about the last second',
  always: 'a process or machine crash: each write is fsynced to disk before the answer',
  'replica-ack':
    'the master lost with its machine, the replica promoted: each admission is on the replica before the answer (WAIT 1)',
}

/** How the durability table and the summary name a run. */
export function persistenceLabel(persistence: Persistence): string {
  if (persistence === 'none') return 'no persistence'
  if (persistence === 'replica-ack') return 'a replica, `REDIS_REPLICA_ACK=1`'
  return `appendfsync ${persistence}`
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

function statusSummary(load: LoadSummary): string {
  const counts = load.statusCounts
  let two = 0
  const other: string[] = []
  for (const [code, count] of Object.entries(counts)) {
    if (code.startsWith('2')) two += count
    else if (code !== '409' && code !== '410') other.push(`${code}: ${n0(count)}`)
  }
  if (load.errors > 0) other.push(`errors: ${n0(load.errors)}`)
  return [`${n0(two)} / ${n0(counts['409'] ?? 0)} / ${n0(counts['410'] ?? 0)}`, ...other].join(', ')
}

function auditCells(audit: Audit | undefined): string[] {
  if (!audit) return ['—', '—', '—', '—']
  const fcfs = fcfsHeld(audit) ? 'ok' : '**FAILED**'
  return [n0(audit.rows), n0(audit.duplicateRows + audit.doubleAccepted), n0(audit.overIssued), fcfs]
}

function auditLine(audit: Audit): string {
  const [rows, dup, over, fcfs] = auditCells(audit)
  return `Audit: ${rows} rows, ${dup} duplicates, ${over} over-issued, FCFS ${fcfs}.`
}

/** Phases during which other processes used more than 0.3 cores. */
export function noisyPhases(report: BenchReport): string[] {
  return cpuPhases(report)
    .filter(([, cpu]) => cpu.other > 0.3)
    .map(([label, cpu]) => `${label} (${n2(cpu.other)})`)
}

function cpuPhases(report: BenchReport): [string, CpuUse][] {
  const phases: [string, CpuUse | undefined][] = []
  for (const mode of report.modes) {
    phases.push([`\`${mode.mode}\` closed loop`, mode.closed?.cpu])
    phases.push([`\`${mode.mode}\` open loop`, mode.open?.cpu])
    if (mode.tokenChecked) phases.push(['`bare` + token check closed loop', mode.tokenChecked.cpu])
  }
  phases.push(['`stream` at the target rate', report.goal?.cpu])
  phases.push(['`stream` writer alone (server = API + worker)', report.writer?.cpu])
  phases.push(['`stream` every request admitted (workload B)', report.allAdmitted?.cpu])
  for (const run of report.durability ?? [])
    phases.push([`\`stream\` on Redis, persistence ${run.persistence}`, run.phase?.cpu])
  return phases.filter((phase): phase is [string, CpuUse] => phase[1] !== undefined)
}

function closedRow(mode: ModeReport): string[] {
  const c = mode.closed
  if (mode.status !== 'ok' || !c) return [`\`${mode.mode}\``, `*${mode.status}*: ${mode.reason ?? ''}`]
  return [
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
  ]
}

function costRow(mode: ModeReport): string[] {
  const c = mode.closed!
  const perRequest = (role: string) =>
    c.load.completed > 0 ? n0(((c.cpu.roles[role] ?? 0) * c.cpu.seconds * 1e6) / c.load.completed) : '—'
  const top = Object.entries(mode.redis?.byCommand ?? {}).slice(0, 6)
  return [
    `\`${mode.mode}\``,
    n0(c.load.completed),
    c.audit ? n0(c.audit.rows) : '—',
    perRequest('server'),
    perRequest('generator'),
    mode.redis ? top.map(([command, calls]) => `${command} ${n0(calls)}`).join(', ') : '—',
    mode.redis ? n2(mode.redis.perRequest) : '—',
    mode.postgres ? n0(mode.postgres.transactions) : '—',
    mode.postgres ? n2(mode.postgres.perRequest) : '—',
  ]
}

function openRow(mode: ModeReport): string[] {
  const o = mode.open!
  const stopped =
    o.load.saturatedAtSec === undefined
      ? ''
      : ` (stopped after ${n1(o.load.saturatedAtSec)} s: over 2 s behind)`
  return [
    `\`${mode.mode}\``,
    n0(o.load.offeredRate ?? 0),
    n0(o.load.achievedSendRate ?? 0) + stopped,
    n0(o.load.rps),
    ms(o.load.latency.p50),
    ms(o.load.latency.p99),
    ms(o.load.latency.p999),
    statusSummary(o.load),
    mode.mode === 'bare' ? '—' : seconds(o.timeToLastRowMs),
    o.audit ? ms(o.audit.requestToRow.p99) : '—',
    ...auditCells(o.audit),
  ]
}

function goalPhaseText(report: BenchReport): string {
  const g = report.goal
  if (!g) return report.goalErrors.find((error) => error.startsWith('request')) ?? 'Not run in this run.'
  const summaries: [string, LatencySummary][] = [
    ['seen by a 10 ms poll (upper bound)', g.requestToRowObserved],
    ['issued_at, the writer transaction start (lower bound)', g.requestToRowCommitted],
    ['issued_at − requested_at as the server recorded them', g.audit.rowLatency],
  ]
  return [
    `**Request to row at ${n0(g.rate)} requests/s** (open loop, ${g.seconds} s, ${n0(g.load.sent)} users, a coupon ` +
      'with enough stock for all of them, so every request becomes a row): ' +
      `sent ${n0(g.load.achievedSendRate ?? 0)}/s, answered ${n0(g.load.rps)}/s; HTTP latency p50 ${ms(g.load.latency.p50)} / ` +
      `p99 ${ms(g.load.latency.p99)} / p99.9 ${ms(g.load.latency.p999)} ms; client send lag p99 ${ms(g.load.sendLag?.p99)} ms.`,
    '',
    table(
      ['request → row (ms)', 'p50', 'p90', 'p99', 'p99.9', 'max'],
      summaries.map(([label, x]) => [label, ms(x.p50), ms(x.p90), ms(x.p99), ms(x.p999), ms(x.max)]),
    ),
    '',
    auditLine(g.audit),
  ].join('\n')
}

function writerPhaseText(report: BenchReport): string {
  const w = report.writer
  if (!w) return report.goalErrors.find((error) => error.startsWith('writer')) ?? ''
  return (
    `**The writer alone**: an API server with \`RUN_WORKERS=false\` admitted ${n0(w.admitted)} users into one coupon's stream ` +
    `(${n0(w.admissionRps)} admissions/s with no writer running), then one \`coupon-rush worker\` process was started and ` +
    `Postgres polled every 5 ms: first rows ${seconds(w.firstRowAfterSpawnMs)} after the spawn, all rows ${seconds(w.drainMs)} later — ` +
    `**${n0(w.rowsPerSecond ?? 0)} rows/s** (${n0(w.rowsPerSecondFromSpawn ?? 0)} rows/s counting the worker's start-up); ` +
    `per row ${w.postgresTransactionsPerRow.toFixed(4)} Postgres transactions and ${n2(w.redisCommandsPerRow)} Redis commands. ` +
    drainCpuText(w) +
    auditLine(w.audit) +
    floorText(w)
  )
}

/**
 * The writer's floor: what Postgres and Redis cost per row with nothing of ours around them, against the
 * budget a rate of WRITER_ROWS_PER_SECOND leaves per row on this machine's cores.
 */
function floorText(w: WriterPhase): string {
  if (w.floor === undefined)
    return w.floorError === undefined ? '' : `\n\nThe writer's floor: ${w.floorError}.`
  const { postgres, redis, rows, batchSize } = w.floor
  const cores = w.drainCpu?.machineCores ?? w.cpu.machineCores
  const budget = (cores * 1e6) / WRITER_ROWS_PER_SECOND
  const both = postgres.microsPerRow + (redis?.microsPerRow ?? 0)
  return (
    `\n\n**The writer's floor** (each step alone, ${n0(rows)} rows in batches of ${n0(batchSize)}, nothing of ours around ` +
    `it): the writers' insert (\`issueFreshAlone\`) on one connection writes ${n0(postgres.rowsPerSecond)} rows/s at ` +
    `${n1(postgres.microsPerRow)} µs of Postgres CPU per row; a coupon's batches queue on its row lock, so that is also ` +
    'the most Postgres alone writes one coupon at. ' +
    (redis === undefined
      ? ''
      : `The stream's own work (\`XREADGROUP\`, then \`ackAndTrim-1.lua\`) costs Redis ${n1(redis.microsPerRow)} µs per row. `) +
    `Together ${n1(both)} µs per row of the ${n1(budget)} µs that ${n0(WRITER_ROWS_PER_SECOND)} rows/s leaves on ` +
    `${cores} cores, before the writer's own process or anything else on the machine.`
  )
}

/**
 * CPU per row while the rows arrived (first row seen to last), by process: what the writer costs, and the
 * rate those costs would allow if every core of the machine were busy with nothing else.
 */
function drainCpuText(w: WriterPhase): string {
  const cpu = w.drainCpu
  const rows = w.admitted - (w.firstCount ?? 0)
  if (cpu === undefined || rows <= 0) return ''
  const perRow = (role: string) => ((cpu.roles[role] ?? 0) * cpu.seconds * 1e6) / rows
  const parts = { worker: perRow('worker'), Redis: perRow('redis'), Postgres: perRow('postgres') }
  const total = parts.worker + parts.Redis + parts.Postgres
  return (
    `While the rows arrived, CPU per row: worker ${n1(parts.worker)} µs, Redis ${n1(parts.Redis)} µs, Postgres ` +
    `${n1(parts.Postgres)} µs — ${n1(total)} µs in all, so ${cpu.machineCores} cores busy with nothing else would ` +
    `write at most ${n0((cpu.machineCores * 1e6) / total)} rows/s (the machine was ${n2(cpu.busy)} of ${cpu.machineCores} cores busy). `
  )
}

function durabilityTable(report: BenchReport): string {
  const runs = report.durability ?? []
  if (runs.length === 0)
    return 'Not measured in this run (`--skip-durability`, or a run from before this phase existed).'
  const none = runs.find((run) => run.persistence === 'none')?.phase?.load.rps
  return table(
    ['Redis', 'survives', 'req/s', 'vs none', 'p50 ms', 'p99 ms', 'rows', 'dup', 'over', 'FCFS'],
    runs.map((run) => {
      const label = persistenceLabel(run.persistence)
      const p = run.phase
      if (run.status !== 'ok' || !p)
        return [label, SURVIVES[run.persistence], `*failed*: ${run.reason ?? ''}`]
      return [
        label,
        SURVIVES[run.persistence],
        `**${n0(p.load.rps)}**`,
        none ? `${Math.round((p.load.rps / none) * 100)}%` : '—',
        ms(p.load.latency.p50),
        ms(p.load.latency.p99),
        ...auditCells(p.audit),
      ]
    }),
  )
}

/** Every mode on the closed-loop sale: speed, answers, time to row, cost and the audit. */
function closedTable(report: BenchReport): string {
  return table(
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
    report.modes.map(closedRow),
  )
}

/** What one request costs each mode that ran: CPU, Redis commands and Postgres transactions. */
function costTable(report: BenchReport): string {
  const ok = report.modes.filter((mode) => mode.status === 'ok' && mode.closed)
  return table(
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
    ok.map(costRow),
  )
}

/** The modes that ran an open-loop phase: offered against achieved rate, latency and the audit. */
function openTable(report: BenchReport): string {
  return table(
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
    report.modes.filter((mode) => mode.open).map(openRow),
  )
}

/** Where the CPU went in each phase, by role. */
function cpuTable(report: BenchReport): string {
  return table(
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
    cpuPhases(report).map(([label, cpu]) => {
      const r = cpu.roles
      return [
        label,
        n1(cpu.seconds),
        ...[
          cpu.busy,
          (r.server ?? 0) + (r.worker ?? 0),
          r.generator ?? 0,
          r.redis ?? 0,
          r.postgres ?? 0,
          (r.bench ?? 0) + (r.benchPostgres ?? 0),
          cpu.interrupts + cpu.steal,
          cpu.other,
        ].map(n2),
      ]
    }),
  )
}

/** The values of the template's `{{name}}` placeholders. */
export function reportValues(report: BenchReport): Record<string, string> {
  const m = report.machine
  const s = report.settings
  const noisy = noisyPhases(report)
  const audits = [
    ...report.modes.flatMap((mode) => [mode.closed?.audit, mode.open?.audit]),
    report.goal?.audit,
    ...(report.durability ?? []).map((run) => run.phase?.audit),
  ]
  const arrivalPairs = audits.reduce((sum, audit) => sum + (audit?.arrivalOrder?.checked ?? 0), 0)
  return {
    startedAt: report.startedAt.slice(0, 16).replace('T', ' '),
    command: report.command,
    machine: `${m.cpus} CPUs (\`nproc\`), ${m.cpuModel}, ${m.memoryGiB} GiB memory, Node ${m.node}, ${m.platform}`,
    seconds: n0(report.seconds),
    cpus: String(m.cpus),
    busyBefore: `Before the run, other processes kept ${n2(Number(s.busyCoresBeforeRun ?? 0))} of ${m.cpus} cores busy.`,
    noisy:
      noisy.length === 0
        ? ''
        : `> ⚠️ **Noisy run**: other processes used more than 0.3 cores during ${noisy.join(', ')}; those figures are ` +
          'lower than on a quiet machine and the ratios between modes are less reliable. Re-run when the machine is idle.',
    goalsTable: table(
      ['goal', 'target', 'measured', 'verdict', 'detail'],
      report.goals.map((goal) => [goal.title, goal.target, goal.measured, verdict(goal), goal.detail]),
    ),
    quantity: n0(Number(s.quantity)),
    users: n0(Number(s.users)),
    repeat: `${Math.round(Number(s.repeatRatio) * 100)}%`,
    connections: String(s.connections),
    duration: String(s.durationSec),
    openDuration: String(s.openDurationSec),
    rate: n0(Number(s.rate)),
    closedTable: closedTable(report),
    costTable: costTable(report),
    stageTable: stageTable(report),
    rateSearch: rateSearchText(report),
    soldOutRounds: soldOutRoundsText(report),
    openTable: openTable(report),
    goalPhase: goalPhaseText(report),
    writerPhase: writerPhaseText(report),
    durabilityTable: durabilityTable(report),
    cpuTable: cpuTable(report),
    skipped: report.modes
      .filter((mode) => mode.status !== 'ok')
      .map((mode) => `- \`${mode.mode}\`: ${mode.status} — ${mode.reason ?? ''}`)
      .join('\n'),
    redis: String(s.redis),
    database: String(s.database),
    kafka: String(s.kafka ?? 'no broker running'),
    arrivalPairs: n0(arrivalPairs),
  }
}

/** Fills `{{name}}` placeholders; an unknown name is an error, and empty blocks leave no blank runs. */
export function fill(template: string, values: Record<string, string>): string {
  const text = template.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`bench/report.md: no value for {{${name}}}`)
    return value
  })
  return `${text.replace(/\n{3,}/g, '\n\n').trimEnd()}\n`
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

const COLORS: Record<string, string> = {
  bare: '#9e9e9e',
  sync: '#e4572e',
  queue: '#f3a712',
  stream: '#29335c',
  kafka: '#669bbc',
}

/** A horizontal bar chart in four panels: req/s, p99, first request → last row, request → row p99. */
export function svg(report: BenchReport): string {
  const modes = report.modes.filter((mode) => mode.status === 'ok' && mode.closed)
  const withRows = modes.filter((mode) => mode.mode !== 'bare')
  const panels: [string, string, [string, number | undefined][]][] = [
    [
      'Closed-loop admission throughput (req/s, higher is better)',
      'req/s',
      modes.map((m) => [m.mode, m.closed!.load.rps]),
    ],
    [
      'Closed-loop latency p99 (ms, lower is better)',
      'ms',
      modes.map((m) => [m.mode, m.closed!.load.latency.p99]),
    ],
    [
      'First request → last row in Postgres (s, lower is better)',
      's',
      withRows.map((m) => [
        m.mode,
        m.closed!.timeToLastRowMs === undefined ? undefined : m.closed!.timeToLastRowMs / 1000,
      ]),
    ],
    [
      'Request → row p99 (ms, lower is better)',
      'ms',
      withRows.map((m) => [m.mode, m.closed!.audit?.requestToRow.p99]),
    ],
  ]
  const width = 760
  const text = (x: number, y: number, body: string, extra = 'font-size="12"') =>
    `<text x="${x.toFixed(1)}" y="${y}" ${extra}>${escapeXml(body)}</text>`
  const title = `Coupon Rush benchmark — ${report.startedAt.slice(0, 10)}, ${report.machine.cpus} CPUs, ${report.command}`
  const parts = [text(16, 24, title, 'font-size="16" font-weight="bold"')]
  let y = 40
  for (const [heading, unit, values] of panels) {
    y += 14
    parts.push(text(16, y, heading, 'font-size="13" font-weight="bold"'))
    y += 8
    const max = Math.max(1, ...values.map(([, value]) => value ?? 0))
    for (const [label, value] of values) {
      const length = value === undefined ? 0 : Math.max(1, ((width - 220) * value) / max)
      const shown =
        value === undefined
          ? 'n/a'
          : `${value.toLocaleString('en-US', { maximumFractionDigits: value < 10 ? 2 : 0 })} ${unit}`
      parts.push(
        text(16, y + 15, label),
        `<rect x="80" y="${y + 3}" width="${length.toFixed(1)}" height="16" fill="${COLORS[label] ?? '#555'}"/>`,
        text(86 + length, y + 15, shown),
      )
      y += 22
    }
    y += 10
  }
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    '<rect width="100%" height="100%" fill="white"/>',
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}

/**
 * Writes the run. `publish`: bench/results/latest.{json,svg} and docs/benchmarks.md (committed) plus a dated
 * JSON next to them (git-ignored); otherwise everything goes to .cache/bench/ (git-ignored) only.
 */
export async function writeReports(report: BenchReport, stamp: string, publish: boolean): Promise<string[]> {
  const json = `${JSON.stringify(report, null, 2)}\n`
  const markdown = fill(await readFile(join(ROOT, 'bench', 'report.md'), 'utf8'), reportValues(report))
  const files: [string, string][] = publish
    ? [
        ['bench/results/latest.json', json],
        ['bench/results/latest.svg', svg(report)],
        [`bench/results/${stamp}.json`, json],
        ['docs/benchmarks.md', markdown],
      ]
    : [
        [`.cache/bench/${stamp}.json`, json],
        [`.cache/bench/${stamp}.svg`, svg(report)],
        [`.cache/bench/${stamp}.md`, markdown.replace('../bench/results/latest.svg', `${stamp}.svg`)],
      ]
  for (const [name, content] of files) {
    await mkdir(join(ROOT, name, '..'), { recursive: true })
    await writeFile(join(ROOT, name), content)
  }
  return files.map(([name]) => name)
}

/** The short version for the terminal. */
export function printSummary(report: BenchReport): void {
  const lines = [
    '',
    'mode      req/s    p50 ms   p99 ms  p99.9 ms  last row   Redis/iss  PG/iss   rows  dup over FCFS',
  ]
  const row = (label: string, phase: PhaseReport, mode?: ModeReport) => {
    const a = phase.audit
    lines.push(
      [
        label.padEnd(8),
        n0(phase.load.rps).padStart(7),
        n1(phase.load.latency.p50).padStart(8),
        n1(phase.load.latency.p99).padStart(8),
        n1(phase.load.latency.p999).padStart(9),
        (a ? seconds(phase.timeToLastRowMs) : '—').padStart(9),
        (mode?.redis ? n1(mode.redis.perIssued) : '—').padStart(10),
        (mode?.postgres ? n2(mode.postgres.perIssued) : '—').padStart(7),
        ...auditCells(a).map((cell, index) => cell.replaceAll('*', '').padStart([6, 4, 4, 5][index]!)),
      ].join(' '),
    )
  }
  for (const mode of report.modes) {
    if (mode.status === 'ok' && mode.closed) row(mode.mode, mode.closed, mode)
    else lines.push(`${mode.mode.padEnd(8)}  ${mode.status}: ${mode.reason ?? ''}`)
  }
  if (report.durability?.length)
    lines.push('stream on a Redis of its own (no-aof, appendfsync everysec, always, replica-ack):')
  for (const run of report.durability ?? []) {
    const label = run.persistence === 'none' ? 'no-aof' : run.persistence
    if (run.phase) row(label, run.phase)
    else lines.push(`${label.padEnd(8)}  failed: ${run.reason ?? ''}`)
  }
  lines.push('')
  for (const goal of report.goals)
    lines.push(`${verdict(goal).padEnd(14)} ${goal.title.replaceAll('`', '')}: ${goal.detail}`)
  console.log(lines.join('\n'))
}
