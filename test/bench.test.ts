/**
 * The benchmark's own logic that needs no load: the arrival-order part of the FCFS audit (positions must
 * follow the order in which the client saw its answers, as far as concurrency lets it tell), and the report
 * template filled from a run's JSON.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { describe, it } from 'node:test'
import { evaluateGoals } from '../bench/lib/goals.ts'
import { arrivalOrderCheck } from '../bench/lib/probes.ts'
import {
  type BenchReport,
  fill,
  type PhaseReport,
  reportValues,
  type SoldOutRound,
} from '../bench/lib/report.ts'
import {
  highestRateMet,
  medianRoundRatios,
  nextRate,
  type RateStep,
  soldOutRoundsText,
  stageMicros,
  stageTable,
} from '../bench/lib/stages.ts'

type Request = [user: string, position: number, sentAtMs: number, answeredAtMs: number]

function accepted(requests: Request[]) {
  return {
    users: requests.map(([user]) => user),
    positions: requests.map(([, position]) => position),
    sentAtMs: requests.map(([, , sent]) => sent),
    answeredAtMs: requests.map(([, , , answered]) => answered),
    statuses: requests.map(() => 'ACCEPTED'),
  }
}

describe('the arrival-order check', () => {
  it('passes positions that follow the order of answers seen before each send', () => {
    const result = arrivalOrderCheck(
      accepted([
        ['a', 1, 0, 10],
        ['b', 2, 11, 20],
        ['c', 3, 21, 30],
      ]),
    )
    assert.deepEqual(result, { checked: 2, violations: 0 })
  })

  it('flags a request sent after another was answered that holds the smaller position', () => {
    const result = arrivalOrderCheck(
      accepted([
        ['a', 2, 0, 10],
        ['b', 1, 11, 20],
      ]),
    )
    assert.deepEqual(result, { checked: 1, violations: 1 })
  })

  it('lets requests in flight together take either order', () => {
    const result = arrivalOrderCheck(
      accepted([
        ['a', 2, 0, 10],
        ['b', 1, 5, 12],
        ['c', 3, 13, 20],
      ]),
    )
    assert.deepEqual(result, { checked: 1, violations: 0 })
  })

  it("counts a user's first admission only and skips answers without a position", () => {
    const result = arrivalOrderCheck(
      accepted([
        ['a', 1, 0, 10],
        ['a', 0, 11, 12],
        ['b', 0, 13, 14],
        ['c', 2, 15, 16],
      ]),
    )
    assert.deepEqual(result, { checked: 1, violations: 0 })
  })
})

async function committedRun(): Promise<BenchReport> {
  const json = await readFile(new URL('../bench/results/latest.json', import.meta.url), 'utf8')
  return JSON.parse(json) as BenchReport
}

describe('the benchmark report', () => {
  it('fills every placeholder of bench/report.md from the committed run', async () => {
    const template = await readFile(new URL('../bench/report.md', import.meta.url), 'utf8')
    const report = await committedRun()
    report.goals = evaluateGoals(report)
    const page = fill(template, reportValues(report))
    assert.doesNotMatch(page, /\{\{/)
    assert.equal(page.match(/^\| goal \| target/gm)?.length, 1, 'one goals table')
    assert.equal(report.goals.length, 9)
  })

  it('refuses a placeholder it has no value for', () => {
    assert.throws(() => fill('a {{missing}} b', {}), /no value for \{\{missing\}\}/)
  })

  it('says that a missed speed goal is a figure of the machine, and a missed correctness goal is not', async () => {
    const report = await committedRun()
    report.writer!.rowsPerSecond = 10
    report.modes.find((mode) => mode.mode === 'stream')!.closed!.audit!.duplicateRows = 1
    const goals = evaluateGoals(report)
    const writer = goals.find((goal) => goal.title.startsWith('The writer alone'))!
    const duplicates = goals.find((goal) => goal.title.startsWith('Zero duplicates'))!
    assert.equal(writer.met, false)
    assert.match(writer.detail, /a figure of this machine/)
    assert.equal(duplicates.met, false)
    assert.doesNotMatch(duplicates.detail, /a figure of this machine/)
  })

  it("states the writer's floor against the budget the writer goal leaves per row, or why it is missing", async () => {
    const report = await committedRun()
    const writer = report.writer!
    writer.floor = {
      rows: 200_000,
      batchSize: 2_000,
      postgres: { rowsPerSecond: 84_661, microsPerRow: 8.9 },
      redis: { rowsPerSecond: 300_000, microsPerRow: 2.1 },
    }
    assert.match(
      reportValues(report).writerPhase ?? '',
      /writes 84,661 rows\/s at 8\.9 µs of Postgres CPU per row.*Redis 2\.1 µs per row\. Together 11\.0 µs per row of the 20\.0 µs that 100,000 rows\/s leaves on 2 cores/,
    )
    writer.floor = undefined
    writer.floorError = 'writer floor failed: connect ECONNREFUSED'
    assert.match(
      reportValues(report).writerPhase ?? '',
      /The writer's floor: writer floor failed: connect ECONNREFUSED\./,
    )
  })

  it('gives the writer CPU per row while the rows arrived, and the rate it would allow on every core', async () => {
    const report = await committedRun()
    const writer = report.writer!
    writer.admitted = 200_000
    writer.firstCount = 2_000
    // 198,000 rows in 2 s: worker 0.495 × 2 s = 0.99 s = 5 µs per row, Redis 5 µs, Postgres 10 µs.
    writer.drainCpu = {
      seconds: 2,
      machineCores: 2,
      busy: 1.6,
      roles: { worker: 0.495, redis: 0.495, postgres: 0.99, server: 0.01 },
      interrupts: 0,
      steal: 0,
      other: 0,
    }
    const text = reportValues(report).writerPhase ?? ''
    assert.match(text, /worker 5\.0 µs, Redis 5\.0 µs, Postgres 10\.0 µs — 20\.0 µs in all/)
    assert.match(text, /2 cores busy with nothing else would write at most 100,000 rows\/s/)
    delete writer.drainCpu
    assert.doesNotMatch(
      reportValues(report).writerPhase ?? '',
      /While the rows arrived/,
      'an older run has none',
    )
  })

  it('judges the sold-out CPU ratio and the CPU per admitted row from the stage figures of the run', async () => {
    const report = await committedRun()
    // Without alternating rounds (as a run with --rounds 0): judged on the mode phases.
    report.soldOutRounds = undefined
    const stream = report.modes.find((mode) => mode.mode === 'stream')!.closed!
    const bare = report.modes.find((mode) => mode.mode === 'bare')!.closed!
    const perRequest = (phase: typeof bare) =>
      (((phase.cpu.roles.server ?? 0) + (phase.cpu.roles.worker ?? 0)) * phase.cpu.seconds) /
      phase.load.completed
    const ratio = perRequest(stream) / perRequest(bare)
    const soldOut = evaluateGoals(report).find((goal) => goal.title.startsWith('A: sold-out'))!
    assert.equal(soldOut.measured, `${ratio.toFixed(2)}×`)
    assert.equal(soldOut.met, ratio <= 1.6)
    // The same run with the server's CPU in the sold-out phase scaled down to 1.5× the bare route meets it.
    stream.cpu.roles.server = (stream.cpu.roles.server ?? 0) * (1.5 / ratio)
    stream.cpu.roles.worker = (stream.cpu.roles.worker ?? 0) * (1.5 / ratio)
    assert.equal(evaluateGoals(report).find((goal) => goal.title.startsWith('A: sold-out'))!.met, true)
    const admitted = evaluateGoals(report).find((goal) => goal.title.startsWith('B: every request'))!
    assert.match(admitted.detail, /server [\d.]+ \+ Redis [\d.]+ \+ Postgres [\d.]+ µs/)
    // With the bare route measured right before and after B, B's row is also stated in bare requests.
    report.allAdmittedBare = { before: phaseUsing(20), after: phaseUsing(30) }
    const beside = evaluateGoals(report).find((goal) => goal.title.startsWith('B: every request'))!
    const all = report.allAdmitted!
    const row = stageMicros(all.cpu, all.audit?.rows ?? 0)!
    const rowMicros = row.server + row.redis + row.postgres
    assert.ok(
      beside.detail.includes(
        `right before and after B: 25.0 µs, so B's row costs ${(rowMicros / 25).toFixed(1)}× a bare request in the same minutes`,
      ),
      beside.detail,
    )
    assert.match(stageTable(report), /\| bare route, right before B \| request \| 20\.0 \|/)
    report.allAdmitted = undefined
    assert.equal(evaluateGoals(report).find((goal) => goal.title.startsWith('B: every request'))!.met, null)
  })
})

/** A closed loop of `requests` whose server used `serverMicros` of CPU per request (one core-second base). */
function phaseUsing(serverMicros: number, requests = 100_000): PhaseReport {
  return {
    load: { completed: requests } as PhaseReport['load'],
    rowsReached: true,
    cpu: {
      seconds: 1,
      machineCores: 2,
      busy: 1,
      roles: { server: (serverMicros * requests) / 1e6 },
      interrupts: 0,
      steal: 0,
      other: 0,
    },
  }
}

function round(bare: number, token: number, soldOut: number): SoldOutRound {
  return { bare: phaseUsing(bare), tokenChecked: phaseUsing(token), soldOut: phaseUsing(soldOut) }
}

describe("goal A's alternating rounds", () => {
  it("takes the median of the rounds' own ratios, so one drifting round does not decide", () => {
    const rounds = [round(25, 35, 40), round(36, 60, 70), round(25, 33, 38)]
    const median = medianRoundRatios(rounds)!
    assert.equal(median.rounds, 3)
    assert.equal(median.soldOut.toFixed(4), (40 / 25).toFixed(4))
    assert.equal(median.floor.toFixed(4), (35 / 25).toFixed(4))
    assert.equal(medianRoundRatios([round(20, 30, 30), round(20, 30, 34)])!.soldOut.toFixed(4), '1.6000')
    assert.equal(medianRoundRatios([]), undefined)
  })

  it('judges goal A on the rounds when they ran, and shows each round in the report', async () => {
    const report = await committedRun()
    report.soldOutRounds = [round(25, 35, 41), round(30, 40, 46), round(25, 35, 39)]
    const goal = evaluateGoals(report).find((item) => item.title.startsWith('A: sold-out'))!
    assert.equal(goal.measured, '1.56×')
    assert.equal(goal.met, true)
    assert.match(goal.detail, /1\.40× already \(medians of 3 alternating rounds\)/)
    const text = soldOutRoundsText(report)
    assert.match(text, /^\| 2 \| 30\.0 \| 40\.0 \| 46\.0 \| 1\.53× \| 1\.33× \|$/m)
    assert.match(text, /^\| \*\*median\*\* \| \| \| \| \*\*1\.56×\*\* \| \*\*1\.40×\*\* \|$/m)
  })
})

function step(rate: number, rowP99Ms: number): RateStep {
  return {
    rate,
    seconds: 5,
    sent: rate * 5,
    answered: rate,
    rowP99Ms,
    rowP99CommittedMs: rowP99Ms,
    met: rowP99Ms < 250,
  }
}

describe('CPU per stage and the all-admitted rate search', () => {
  it('goes up by a quarter while request → row p99 holds and stops at the first rate that misses', () => {
    const steps = [step(4_000, 90)]
    assert.equal(nextRate(steps, 5), 5_000)
    steps.push(step(5_000, 120), step(6_250, 900))
    assert.equal(nextRate(steps, 5), undefined)
    assert.equal(highestRateMet(steps), 5_000)
  })

  it('goes down by a quarter from a rate that misses until one holds', () => {
    const steps = [step(10_000, 1_600)]
    assert.equal(nextRate(steps, 5), 7_500)
    steps.push(step(7_500, 400), step(5_625, 200))
    assert.equal(nextRate(steps, 5), undefined)
    assert.equal(highestRateMet(steps), 5_625)
    assert.equal(highestRateMet([step(10_000, 1_600)]), undefined)
  })

  it("splits a phase's CPU per request by stage, the worker counted with the server", async () => {
    const cpu = {
      seconds: 10,
      machineCores: 2,
      busy: 1.8,
      roles: { server: 0.5, worker: 0.1, redis: 0.2, postgres: 0.3, generator: 0.4 },
      interrupts: 0,
      steal: 0,
      other: 0,
    }
    assert.deepEqual(stageMicros(cpu, 100_000), { server: 60, redis: 20, postgres: 30, generator: 40 })
    const report = await committedRun()
    const table = stageTable(report)
    assert.match(table, /\| bare route \| request \|/)
    assert.match(table, /\| A: sold-out flash sale \(`stream`\) \| request \| [\d.,]+ \|.* \| [\d.]+× \|$/m)
  })
})
