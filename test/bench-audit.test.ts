/**
 * The arrival-order part of the FCFS audit the benchmark and the demo run: positions must follow the order
 * in which the client saw its answers, as far as concurrency lets it tell.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { arrivalOrderCheck } from '../bench/lib/probes.ts'

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
