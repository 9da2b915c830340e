/**
 * The goals of the benchmark, judged from the measured figures of one run (never edited by hand). The
 * throughput and latency goals depend on the machine; the correctness goals (no duplicate, no over-issue,
 * FCFS) must hold anywhere.
 */
import { type Audit, fcfsHeld } from './probes.ts'
import type { BenchReport, Goal, ModeReport } from './report.ts'
import { bareBesideAdmitted, medianRoundRatios, serverRatio, stageMicros } from './stages.ts'

/** Issue 20's bounds: the sold-out path's server CPU against the bare route's, and B's CPU per admitted row. */
export const SOLD_OUT_RATIO_LIMIT = 1.6
export const ADMITTED_ROW_MICROS_LIMIT = 90
export const WRITER_ROWS_PER_SECOND = 100_000

const n0 = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: 0 })
const n1 = (value: number) =>
  value.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 })
const pct = (value: number) => `${Math.round(value * 100)}%`
const seconds = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} s`)
const ms = (value: number | undefined) => (value === undefined ? '—' : n1(value))

function okMode(report: BenchReport, mode: string): ModeReport | undefined {
  return report.modes.find((item) => item.mode === mode && item.status === 'ok')
}

export function allAudits(report: BenchReport): { label: string; audit: Audit }[] {
  const audits: { label: string; audit: Audit }[] = []
  for (const mode of report.modes) {
    if (mode.closed?.audit) audits.push({ label: `${mode.mode} closed loop`, audit: mode.closed.audit })
    if (mode.open?.audit) audits.push({ label: `${mode.mode} open loop`, audit: mode.open.audit })
  }
  if (report.goal) audits.push({ label: 'stream request-to-row phase', audit: report.goal.audit })
  if (report.writer) audits.push({ label: 'stream writer phase', audit: report.writer.audit })
  for (const run of report.durability ?? [])
    if (run.phase?.audit) audits.push({ label: `stream on Redis ${run.persistence}`, audit: run.phase.audit })
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

/** Why a mode has no figures in this run: its status and reason, or that it was not run. */
function skippedWhy(report: BenchReport, mode: string): string {
  const item = report.modes.find((entry) => entry.mode === mode)
  return item ? `${mode} ${item.status}${item.reason ? `: ${item.reason}` : ''}` : `${mode} not run`
}

/** `stream`'s closed-loop req/s against `sync` (25×) and against the bare route (70%), with the CPU view. */
function throughputGoals(report: BenchReport): Goal[] {
  const stream = okMode(report, 'stream')
  const streamRps = stream?.closed?.load.rps
  const against = (name: string, title: string, target: number, what: string): Goal => {
    const other = okMode(report, name)
    const goal = ratioGoal(
      title,
      target,
      streamRps !== undefined && other?.closed ? streamRps / other.closed.load.rps : undefined,
      what,
      `not measured: ${stream ? skippedWhy(report, name) : skippedWhy(report, 'stream')}`,
    )
    return goal.met === null ? goal : { ...goal, detail: goal.detail + cpuView(stream, other, name) }
  }
  return [
    against('sync', '`stream` admission req/s against `sync` (closed loop)', 25, '25 × sync'),
    against(
      'bare',
      '`stream` admission req/s against the bare Fastify route (closed loop)',
      0.7,
      '70% of bare',
    ),
  ]
}

/** `queue`'s time to row against `stream`'s: a comparison, with what a 10-minute schedule adds. */
function queueGoal(report: BenchReport): Goal {
  const queue = okMode(report, 'queue')
  const q = queue?.closed
  const s = okMode(report, 'stream')?.closed
  const title = '`queue` time to row (default 1 s schedule) against `stream`'
  if (q?.timeToLastRowMs !== undefined && s?.timeToLastRowMs !== undefined && q.audit && s.audit) {
    return {
      title,
      target: 'comparison',
      measured:
        `last row ${seconds(q.timeToLastRowMs)} vs ${seconds(s.timeToLastRowMs)}; ` +
        `request→row p50 ${ms(q.audit.requestToRow.p50)} vs ${ms(s.audit.requestToRow.p50)} ms, ` +
        `p99 ${ms(q.audit.requestToRow.p99)} vs ${ms(s.audit.requestToRow.p99)} ms`,
      met: null,
      detail:
        `queue's request→row p99 is ${n1(q.audit.requestToRow.p99 / Math.max(s.audit.requestToRow.p99, 0.001))}× stream's at the 1 s schedule. ` +
        'On a 10-minute schedule (`0 */10 * * * *`) every queued request also waits for the next 10-minute mark: ' +
        'up to 600 s (about 300 s on average) more than the figures here, stated rather than waited out.',
    }
  }
  return {
    title,
    target: 'comparison',
    measured: '—',
    met: null,
    detail: `not measured: ${queue ? skippedWhy(report, 'stream') : skippedWhy(report, 'queue')}. On a 10-minute schedule (\`0 */10 * * * *\`) queue would wait up to ten more minutes per request (not waited out).`,
  }
}

/** No duplicates, no over-issue, and FCFS with nothing lost, over every audited sale of the run. */
function correctnessGoals(report: BenchReport): Goal[] {
  const audits = allAudits(report)
  const dup = audits.filter(({ audit }) => audit.duplicateRows + audit.doubleAccepted > 0)
  const over = audits.filter(({ audit }) => audit.overIssued > 0)
  const measuredModes = [...new Set(audits.map(({ label }) => label.split(' ')[0]))]
  const unfair = audits.filter(({ audit }) => !fcfsHeld(audit))
  const lost = audits.filter(({ audit }) => audit.soldOutWithRow > 0 || audit.rowsWithoutAcceptance > 0)
  return [
    {
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
    },
    {
      title:
        'FCFS: the issued users are exactly the admitted (queue: the first by position), in arrival order as the client saw it; nothing lost',
      target: 'every sale',
      measured: `${audits.length - unfair.length - lost.length} of ${audits.length} sales`,
      met: audits.length === 0 ? null : unfair.length === 0 && lost.length === 0,
      detail:
        unfair.length === 0 && lost.length === 0
          ? 'met'
          : `MISSED in ${[...unfair, ...lost].map(({ label, audit }) => `${label} (${audit.problems.join('; ')})`).join(', ')}`,
    },
  ]
}

/** Request-to-row p99 under 250 ms at 10,000 requests/s, from the goal phase. */
function requestToRowGoal(report: BenchReport): Goal {
  const goal = report.goal
  const title = 'Request-to-row p99 under 250 ms at 10,000 requests/s (`stream`)'
  if (!goal)
    return {
      title,
      target: 'p99 < 250 ms',
      measured: '—',
      met: null,
      detail:
        report.goalErrors.find((error) => error.startsWith('request')) ??
        'not run (needs stream; see --skip-goals)',
    }
  const sentRate = goal.load.achievedSendRate ?? 0
  const answered = goal.load.rps
  const reachedRate = sentRate >= goal.rate * 0.95 && answered >= goal.rate * 0.95
  const p99 = goal.requestToRowObserved.p99
  const fast = p99 < 250
  const rateNote = goal.rate === 10_000 ? '' : ` (this run asked for ${n0(goal.rate)}/s, not 10,000/s)`
  // What stream does at a rate it can take, from its open-loop phase (every admitted request there a row).
  const open = okMode(report, 'stream')?.open
  const sustainable =
    open?.audit && open.load.offeredRate
      ? `. At ${n0(open.load.offeredRate)}/s (its open-loop phase: the lower of --rate and 70% of its closed-loop req/s) request-to-row p99 was ` +
        `${n1(open.audit.requestToRow.p99)} ms (issued_at) for its ${n0(open.audit.rows)} rows`
      : ''
  return {
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
  }
}

/** The writer alone at WRITER_ROWS_PER_SECOND or more, from the writer phase. */
function writerGoal(report: BenchReport): Goal {
  const writer = report.writer
  const target = `≥ ${n0(WRITER_ROWS_PER_SECOND)} rows/s`
  const title = `The writer alone sustains at least ${n0(WRITER_ROWS_PER_SECOND)} rows/s, duplicate-safe (\`stream\`)`
  if (writer?.rowsPerSecond === undefined)
    return {
      title,
      target,
      measured: '—',
      met: null,
      detail:
        report.goalErrors.find((error) => error.startsWith('writer')) ??
        'not run (needs stream; see --skip-goals)',
    }
  const met = writer.rowsPerSecond >= WRITER_ROWS_PER_SECOND && writer.reached
  return {
    title,
    target,
    measured: `${n0(writer.rowsPerSecond)} rows/s over ${n0(writer.admitted)} rows`,
    met,
    detail: met
      ? `met (${pct(writer.rowsPerSecond / WRITER_ROWS_PER_SECOND)} of the target)`
      : `missed by ${pct(1 - writer.rowsPerSecond / WRITER_ROWS_PER_SECOND)} (${n0(writer.rowsPerSecond)} rows/s)`,
  }
}

/** A: the sold-out flash sale's server CPU per request at most SOLD_OUT_RATIO_LIMIT × the bare route's. */
function soldOutCpuGoal(report: BenchReport): Goal {
  const title = 'A: sold-out flash sale, server CPU per request against the bare route (`stream`)'
  const target = `≤ ${SOLD_OUT_RATIO_LIMIT}× bare`
  // Judged on the alternating rounds when they ran (phases seconds apart), else on the mode phases.
  const rounds = medianRoundRatios(report.soldOutRounds)
  const ratio = rounds?.soldOut ?? serverRatio(report, okMode(report, 'stream')?.closed)
  if (ratio === undefined)
    return {
      title,
      target,
      measured: '—',
      met: null,
      detail: 'not measured: needs the bare and stream phases',
    }
  const met = ratio <= SOLD_OUT_RATIO_LIMIT
  // The least any answer costs under the contract: the bare route that only checks the token first.
  const floor = rounds?.floor ?? serverRatio(report, okMode(report, 'bare')?.tokenChecked)
  const floorNote =
    (floor === undefined
      ? ''
      : `; the bare route that only checks each token (HS256) before answering is ${floor.toFixed(2)}× already`) +
    (rounds === undefined ? '' : ` (medians of ${rounds.rounds} alternating rounds)`)
  return {
    title,
    target,
    measured: `${ratio.toFixed(2)}×`,
    met,
    detail:
      (met
        ? `met (${ratio.toFixed(2)}× against ${SOLD_OUT_RATIO_LIMIT}×)`
        : `missed: ${ratio.toFixed(2)}× the bare route's server CPU per request instead of ${SOLD_OUT_RATIO_LIMIT}×`) +
      floorNote,
  }
}

/** B: server + Redis + Postgres CPU per admitted request (row) at most ADMITTED_ROW_MICROS_LIMIT. */
function admittedCpuGoal(report: BenchReport): Goal {
  const title = 'B: every request admitted, server + Redis + Postgres CPU per admitted row (`stream`)'
  const target = `≤ ${ADMITTED_ROW_MICROS_LIMIT} µs`
  const phase = report.allAdmitted
  const micros = phase && stageMicros(phase.cpu, phase.audit?.rows ?? 0)
  if (!micros)
    return {
      title,
      target,
      measured: '—',
      met: null,
      detail: 'not measured: the all-admitted phase did not run',
    }
  const total = micros.server + micros.redis + micros.postgres
  const split = `server ${n1(micros.server)} + Redis ${n1(micros.redis)} + Postgres ${n1(micros.postgres)} µs`
  const met = total <= ADMITTED_ROW_MICROS_LIMIT
  const bare = bareBesideAdmitted(report)
  const besideNote =
    bare === undefined
      ? ''
      : `; the bare route's server CPU per request right before and after B: ${n1(bare)} µs, so B's row costs ${(total / bare).toFixed(1)}× a bare request in the same minutes`
  return {
    title,
    target,
    measured: `${n1(total)} µs`,
    met,
    detail:
      (met ? `met (${split})` : `missed by ${n1(total - ADMITTED_ROW_MICROS_LIMIT)} µs (${split})`) +
      besideNote,
  }
}

/**
 * The goals, judged only from the figures of this run. A missed speed goal says that it is a figure of this
 * machine (its cores shared by the load generator, the server, Redis and Postgres).
 */
export function evaluateGoals(report: BenchReport): Goal[] {
  const speed = (goal: Goal) => ({ goal, speed: true })
  const other = (goal: Goal) => ({ goal, speed: false })
  const goals = [
    ...throughputGoals(report).map(speed),
    speed(soldOutCpuGoal(report)),
    speed(admittedCpuGoal(report)),
    other(queueGoal(report)),
    ...correctnessGoals(report).map(other),
    speed(requestToRowGoal(report)),
    speed(writerGoal(report)),
  ]
  const note =
    `. Missed on this shared ${report.machine.cpus}-core machine (load generator, server, Redis and Postgres on the same cores): ` +
    'a figure of this machine, not of a server with cores of its own'
  return goals.map(({ goal, speed }) =>
    goal.met === false && speed ? { ...goal, detail: goal.detail + note } : goal,
  )
}
