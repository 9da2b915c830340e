import assert from 'node:assert/strict'
import type { Issuance } from '../../src/domain/coupon.ts'
import type { RequestOutcome } from '../../src/issuance/core/mode.ts'

export type Admitted = Extract<RequestOutcome, { kind: 'admitted' }>

/** The answer of an admitted request (fails the test if it was refused). */
export function admitted(outcome: RequestOutcome): Admitted {
  if (outcome.kind !== 'admitted') assert.fail(`expected the request to be admitted, not ${outcome.kind}`)
  return outcome
}

/** The problem code a refusal answers over HTTP, with the user's issuance of a 409 (fails if admitted). */
export async function refusal(
  request: Promise<RequestOutcome>,
): Promise<{ code: 'ALREADY_REQUESTED' | 'SOLD_OUT'; status: 409 | 410; issuance?: Issuance }> {
  const outcome = await request
  if (outcome.kind === 'alreadyRequested') {
    return { code: 'ALREADY_REQUESTED', status: 409, ...(outcome.issuance && { issuance: outcome.issuance }) }
  }
  if (outcome.kind === 'soldOut') return { code: 'SOLD_OUT', status: 410 }
  assert.fail('expected the request to be refused')
}
