/**
 * The lean HS256 verifier against fast-jwt's (what it replaced): every token, good or forged, gets the same
 * verdict and the same refusal message from both.
 */
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { describe, it } from 'node:test'
import { createSigner, createVerifier } from 'fast-jwt'
import { Hs256Error, hs256Verifier } from '../src/auth/hs256.ts'

const SECRET = 'a-test-secret-of-enough-length-0123456789'
const NOW_S = Math.floor(Date.now() / 1000)

const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const sign = (input: string, secret = SECRET) =>
  `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
const token = (payload: unknown, header: unknown = { alg: 'HS256', typ: 'JWT' }) =>
  sign(`${part(header)}.${part(payload)}`)

/** What the service tells the user: the message hs256Failure picks (expired, no exp, anything else). */
type Verdict = 'ok' | 'expired' | 'no exp' | 'not valid'

function leanVerdict(jwt: string): Verdict {
  try {
    hs256Verifier(SECRET)(jwt)
    return 'ok'
  } catch (error) {
    assert.ok(error instanceof Hs256Error)
    return error.failure === 'expired' ? 'expired' : error.failure === 'missingExp' ? 'no exp' : 'not valid'
  }
}

function fastJwtVerdict(jwt: string): Verdict {
  try {
    createVerifier({ key: SECRET, algorithms: ['HS256'], requiredClaims: ['exp'] })(jwt)
    return 'ok'
  } catch (error) {
    const code = (error as { code?: string }).code
    return code === 'FAST_JWT_EXPIRED'
      ? 'expired'
      : code === 'FAST_JWT_MISSING_REQUIRED_CLAIM'
        ? 'no exp'
        : 'not valid'
  }
}

const valid = { sub: 'ada', exp: NOW_S + 600 }
const good = token(valid)
const [goodHeader, goodPayload, goodSignature] = good.split('.') as [string, string, string]

const CASES: [string, string, Verdict][] = [
  ['a valid token', good, 'ok'],
  ['a token fast-jwt signed', createSigner({ key: SECRET, expiresIn: 60_000 })({ sub: 'bo' }), 'ok'],
  ['signed with another secret', sign(`${goodHeader}.${goodPayload}`, 'another-secret'), 'not valid'],
  ['alg none, no signature', `${part({ alg: 'none', typ: 'JWT' })}.${goodPayload}.`, 'not valid'],
  ['alg HS512 signed with the secret', token(valid, { alg: 'HS512', typ: 'JWT' }), 'not valid'],
  ['no alg', token(valid, { typ: 'JWT' }), 'not valid'],
  [
    'a payload swapped under the signature',
    `${goodHeader}.${part({ ...valid, sub: 'eve' })}.${goodSignature}`,
    'not valid',
  ],
  ['a signature with one more character', `${good}A`, 'not valid'],
  ['a signature padded with =', `${good}=`, 'not valid'],
  ['expired', token({ sub: 'ada', exp: NOW_S - 5 }), 'expired'],
  ['expired and forged', sign(`${goodHeader}.${part({ sub: 'ada', exp: NOW_S - 5 })}`, 'x'), 'not valid'],
  ['without exp', token({ sub: 'ada' }), 'no exp'],
  ['without exp and forged', sign(`${goodHeader}.${part({ sub: 'ada' })}`, 'x'), 'not valid'],
  ['exp as a string', token({ sub: 'ada', exp: String(NOW_S + 600) }), 'not valid'],
  ['not valid before a future nbf', token({ ...valid, nbf: NOW_S + 300 }), 'not valid'],
  ['valid after a past nbf', token({ ...valid, nbf: NOW_S - 300 }), 'ok'],
  ['not a JWT', 'not-a-jwt', 'not valid'],
  ['two parts', `${goodHeader}.${goodPayload}`, 'not valid'],
  ['four parts', `${good}.x`, 'not valid'],
  ['an empty string', '', 'not valid'],
  [
    'a header that is not JSON',
    sign(`${Buffer.from('{alg').toString('base64url')}.${goodPayload}`),
    'not valid',
  ],
  ['a payload that is an array', token([1, 2]), 'not valid'],
  ['a payload that is a number', token(42), 'not valid'],
]

describe('the lean HS256 verifier', () => {
  for (const [name, jwt, expected] of CASES) {
    it(`gives fast-jwt's verdict on ${name}: ${expected}`, () => {
      assert.equal(fastJwtVerdict(jwt), expected, 'fast-jwt')
      assert.equal(leanVerdict(jwt), expected, 'lean verifier')
    })
  }

  it('gives every verdict again from one verifier that has accepted a token (its header remembered)', () => {
    const verify = hs256Verifier(SECRET)
    const verdict = (jwt: string): Verdict => {
      try {
        verify(jwt)
        return 'ok'
      } catch (error) {
        assert.ok(error instanceof Hs256Error)
        return error.failure === 'expired'
          ? 'expired'
          : error.failure === 'missingExp'
            ? 'no exp'
            : 'not valid'
      }
    }
    for (const [name, jwt, expected] of CASES) {
      assert.equal(verdict(good), 'ok', 'a valid token, before each case')
      assert.equal(verdict(jwt), expected, name)
    }
  })

  it('still checks a token whose header differs from the one it accepted last', () => {
    const verify = hs256Verifier(SECRET)
    assert.deepEqual(verify(good), valid)
    assert.throws(() => verify(token(valid, { alg: 'HS512', typ: 'JWT' })), Hs256Error)
    assert.throws(() => verify(`${part({ alg: 'none', typ: 'JWT' })}.${goodPayload}.`), Hs256Error)
    // Another header that holds is accepted, and remembered in turn.
    const other = token(valid, { alg: 'HS256' })
    assert.deepEqual(verify(other), valid)
    assert.throws(() => verify(`${goodHeader}.${goodPayload}.${goodSignature.slice(1)}A`), Hs256Error)
    assert.deepEqual(verify(good), valid)
  })

  it('gives the payload of a valid token', () => {
    assert.deepEqual(hs256Verifier(SECRET)(good), valid)
  })
})
