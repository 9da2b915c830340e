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
import { type BenchReport, fill, reportValues } from '../bench/lib/report.ts'

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
    assert.equal(report.goals.length, 7)
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
})
