/**
 * Where one request's CPU goes, stage by stage (server, Redis, Postgres, load generator), for the two
 * workloads of issue 20 next to the bare route: A, the sold-out flash sale (`stream` closed loop, 99% of the
 * answers 410), and B, every request admitted with the writer running (`stream`, stock for every user).
 * Plus the all-admitted rate search: the highest open-loop rate at which request → row p99 stays under
 * ROW_P99_LIMIT_MS.
 */
import type { CpuUse } from './cpu.ts'
import type { BenchReport, PhaseReport, SoldOutRound } from './report.ts'

export const ROW_P99_LIMIT_MS = 250

export const STAGES = ['server', 'redis', 'postgres', 'generator'] as const
export type Stage = (typeof STAGES)[number]

/** One step of the all-admitted rate search (an open-loop `stream` phase at `rate`, every request a row). */
export interface RateStep {
  rate: number
  seconds: number
  sent: number
  answered: number
  /** Client send → the 10 ms poll that saw the row (the upper bound the limit is judged on). */
  rowP99Ms: number
  /** Client send → issued_at (the lower bound). */
  rowP99CommittedMs: number
  met: boolean
}

const n0 = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: 0 })
const n1 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 })

/** CPU µs per unit (request or row) of each stage over a phase; the server's worker counts as server. */
export function stageMicros(cpu: CpuUse, units: number): Record<Stage, number> | undefined {
  if (units <= 0) return undefined
  const micros = (cores: number) => (cores * cpu.seconds * 1e6) / units
  const roles = cpu.roles
  return {
    server: micros((roles.server ?? 0) + (roles.worker ?? 0)),
    redis: micros(roles.redis ?? 0),
    postgres: micros(roles.postgres ?? 0),
    generator: micros(roles.generator ?? 0),
  }
}

interface StageRow {
  label: string
  phase: PhaseReport
  units: number
  per: string
}

function stageRows(report: BenchReport): StageRow[] {
  const rows: StageRow[] = []
  const closed = (mode: string) =>
    report.modes.find((item) => item.mode === mode && item.status === 'ok')?.closed
  const bare = closed('bare')
  const soldOut = closed('stream')
  if (bare) rows.push({ label: 'bare route', phase: bare, units: bare.load.completed, per: 'request' })
  const tokenChecked = report.modes.find((item) => item.mode === 'bare' && item.status === 'ok')?.tokenChecked
  if (tokenChecked)
    rows.push({
      label: 'bare route + HS256 token check (the floor of A)',
      phase: tokenChecked,
      units: tokenChecked.load.completed,
      per: 'request',
    })
  if (soldOut)
    rows.push({
      label: 'A: sold-out flash sale (`stream`)',
      phase: soldOut,
      units: soldOut.load.completed,
      per: 'request',
    })
  const all = report.allAdmitted
  const besideB = report.allAdmittedBare
  const bareBeside = (when: string, phase: PhaseReport) =>
    rows.push({ label: `bare route, right ${when} B`, phase, units: phase.load.completed, per: 'request' })
  if (besideB) bareBeside('before', besideB.before)
  if (all) {
    const label = 'B: every request admitted, writer running (`stream`)'
    rows.push({ label, phase: all, units: all.load.completed, per: 'request' })
    rows.push({ label, phase: all, units: all.audit?.rows ?? 0, per: 'admitted (row)' })
  }
  if (besideB) bareBeside('after', besideB.after)
  return rows
}

/**
 * The bare route's server CPU µs per request in the minutes of workload B: the mean of its closed loops right
 * before and right after B.
 */
export function bareBesideAdmitted(report: BenchReport): number | undefined {
  const beside = report.allAdmittedBare
  const before = beside && serverMicros(beside.before)
  const after = beside && serverMicros(beside.after)
  return before !== undefined && after !== undefined ? (before + after) / 2 : undefined
}

/** The server's CPU µs per request of a phase. */
function serverMicros(phase: PhaseReport): number | undefined {
  return stageMicros(phase.cpu, phase.load.completed)?.server
}

/** The server's CPU per request relative to the bare route's, in the same run. */
export function serverRatio(report: BenchReport, phase: PhaseReport | undefined): number | undefined {
  const bare = report.modes.find((item) => item.mode === 'bare' && item.status === 'ok')?.closed
  if (!bare || !phase) return undefined
  const ours = serverMicros(phase)
  const ceiling = serverMicros(bare)
  return ours !== undefined && ceiling ? ours / ceiling : undefined
}

/** The stage table of the report (Markdown). */
export function stageTable(report: BenchReport): string {
  const rows = stageRows(report)
  if (rows.length === 0) return 'Not measured in this run (the `bare` and `stream` phases did not both run).'
  const lines = [
    '| workload | per | server µs | Redis µs | Postgres µs | server + Redis + Postgres µs | generator µs | server vs bare |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for (const row of rows) {
    const micros = stageMicros(row.phase.cpu, row.units)
    if (!micros) continue
    const ratio = row.per === 'request' ? serverRatio(report, row.phase) : undefined
    const cells = [
      row.label,
      row.per,
      n1(micros.server),
      n1(micros.redis),
      n1(micros.postgres),
      `**${n1(micros.server + micros.redis + micros.postgres)}**`,
      n1(micros.generator),
      ratio === undefined ? '—' : `${ratio.toFixed(2)}×`,
    ]
    lines.push(`| ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

/** A round's sold-out sale and token-check route, each against the same round's bare route. */
export function roundRatios(round: SoldOutRound): { soldOut: number; floor: number } | undefined {
  const bare = serverMicros(round.bare)
  const soldOut = serverMicros(round.soldOut)
  const floor = serverMicros(round.tokenChecked)
  if (!bare || soldOut === undefined || floor === undefined) return undefined
  return { soldOut: soldOut / bare, floor: floor / bare }
}

/** The median of the rounds' ratios (the middle one; the mean of the two middle ones for an even count). */
export function medianRoundRatios(
  rounds: SoldOutRound[] | undefined,
): { soldOut: number; floor: number; rounds: number } | undefined {
  const ratios = (rounds ?? []).map(roundRatios).filter((ratio) => ratio !== undefined)
  if (ratios.length === 0) return undefined
  return {
    soldOut: median(ratios.map((ratio) => ratio.soldOut)),
    floor: median(ratios.map((ratio) => ratio.floor)),
    rounds: ratios.length,
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** Goal A's rounds as a table (Markdown): each round's server CPU per request and its ratios. */
export function soldOutRoundsText(report: BenchReport): string {
  const rounds = report.soldOutRounds ?? []
  if (rounds.length === 0) return 'Goal A was not measured in alternating rounds in this run (see --rounds).'
  const lines = [
    `**Goal A in ${rounds.length} alternating rounds** (what the goal is judged on): each round runs the bare ` +
      'route, the bare route with the token check and a sold-out `stream` sale back to back (even rounds in ' +
      "reverse order), with new users, so each ratio compares phases seconds apart; the machine's speed drifts " +
      'over minutes.',
    '',
    '| round | bare µs | bare + HS256 µs | A (sold out) µs | A vs bare | bare + HS256 vs bare |',
    '|---|---|---|---|---|---|',
  ]
  for (const [i, round] of rounds.entries()) {
    const ratios = roundRatios(round)
    const cell = (phase: PhaseReport) => {
      const micros = serverMicros(phase)
      return micros === undefined ? '—' : n1(micros)
    }
    lines.push(
      `| ${i + 1} | ${cell(round.bare)} | ${cell(round.tokenChecked)} | ${cell(round.soldOut)} | ` +
        `${ratios ? `${ratios.soldOut.toFixed(2)}×` : '—'} | ${ratios ? `${ratios.floor.toFixed(2)}×` : '—'} |`,
    )
  }
  const median = medianRoundRatios(rounds)
  if (median)
    lines.push(`| **median** | | | | **${median.soldOut.toFixed(2)}×** | **${median.floor.toFixed(2)}×** |`)
  return lines.join('\n')
}

/** The highest rate of the search that met the limit (undefined: none did, or no search ran). */
export function highestRateMet(steps: RateStep[] | undefined): number | undefined {
  const met = (steps ?? []).filter((step) => step.met).map((step) => step.rate)
  return met.length > 0 ? Math.max(...met) : undefined
}

/** The rate search as a sentence and a table (Markdown). */
export function rateSearchText(report: BenchReport): string {
  const steps = report.rateSearch
  if (!steps || steps.length === 0) return 'The all-admitted rate search did not run in this run.'
  const best = highestRateMet(steps)
  const lines = [
    best === undefined
      ? `**No rate tried kept request → row p99 under ${ROW_P99_LIMIT_MS} ms.**`
      : `**Highest all-admitted rate with request → row p99 under ${ROW_P99_LIMIT_MS} ms: ${n0(best)} requests/s** ` +
        `(rates tried in order below, ${steps[0]!.seconds} s each, every request a new user and a row).`,
    '',
    '| rate /s | sent | answered /s | request → row p99 ms (poll) | p99 ms (issued_at) | under the limit |',
    '|---|---|---|---|---|---|',
  ]
  for (const step of steps)
    lines.push(
      `| ${n0(step.rate)} | ${n0(step.sent)} | ${n0(step.answered)} | ${n1(step.rowP99Ms)} | ` +
        `${n1(step.rowP99CommittedMs)} | ${step.met ? 'yes' : 'no'} |`,
    )
  return lines.join('\n')
}

/**
 * The next rate to try after `steps`, or undefined when the search is done: up by a quarter while the
 * limit holds, down by a quarter while it does not, stopping at the first change of side (or `maxSteps`).
 */
export function nextRate(steps: RateStep[], maxSteps: number): number | undefined {
  const last = steps.at(-1)
  if (!last || steps.length >= maxSteps) return undefined
  const first = steps[0]!
  if (last.met !== first.met) return undefined
  const rate = Math.round(last.met ? last.rate * 1.25 : last.rate * 0.75)
  return rate >= 100 ? rate : undefined
}
