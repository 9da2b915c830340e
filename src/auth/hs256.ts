import { createHmac, createSecretKey, type KeyObject } from 'node:crypto'

/**
 * A lean HS256 verifier with the key prepared once: HMAC-SHA256 of the signing input, one header and one
 * payload parse. It holds tokens to what fast-jwt's `createVerifier({ algorithms: ['HS256'], requiredClaims:
 * ['exp'] })` did, in the same order (form, header, signature, then claims), and fails with the same codes,
 * at about half its cost per distinct token (measured in the issue 20 report).
 */
export type Hs256Failure = 'malformed' | 'signature' | 'missingExp' | 'expired' | 'inactive' | 'claimType'

export class Hs256Error extends Error {
  readonly failure: Hs256Failure

  constructor(failure: Hs256Failure) {
    super(`HS256 token refused: ${failure}`)
    this.failure = failure
  }
}

export type Hs256Payload = Record<string, unknown> & { exp: number }

const BASE64URL = /^[A-Za-z0-9_-]*$/

function jsonObject(part: string): Record<string, unknown> {
  if (part.length === 0 || !BASE64URL.test(part)) throw new Hs256Error('malformed')
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  } catch {
    throw new Hs256Error('malformed')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Hs256Error('malformed')
  return value as Record<string, unknown>
}

/** A time claim must be a number (seconds since the epoch) when present. */
function timeClaim(payload: Record<string, unknown>, name: string): number | undefined {
  const value = payload[name]
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new Hs256Error('claimType')
  return value
}

/**
 * Compares two signatures (base64url strings) in time that depends only on their length, without the two
 * Buffers `timingSafeEqual` needs.
 */
function sameSignature(given: string, expected: string): boolean {
  if (given.length !== expected.length) return false
  let difference = 0
  for (let i = 0; i < given.length; i++) difference |= given.charCodeAt(i) ^ expected.charCodeAt(i)
  return difference === 0
}

export function hs256Verifier(secret: string): (token: string, nowMs?: number) => Hs256Payload {
  const key: KeyObject = createSecretKey(Buffer.from(secret, 'utf8'))
  // The header of the last token accepted, as sent: the tokens of one issuer all carry the same header, so
  // one that matches it is not parsed again. Any other header is parsed and checked.
  let acceptedHeader = ''
  return (token, nowMs = Date.now()) => {
    const headerEnd = token.indexOf('.')
    const payloadEnd = token.indexOf('.', headerEnd + 1)
    if (headerEnd <= 0 || payloadEnd < 0 || token.indexOf('.', payloadEnd + 1) >= 0)
      throw new Hs256Error('malformed')
    const headerPart = token.slice(0, headerEnd)
    // The algorithm is pinned: `none`, and every other algorithm, is refused before any signature check.
    if (headerPart !== acceptedHeader && jsonObject(headerPart).alg !== 'HS256')
      throw new Hs256Error('signature')
    const expected = createHmac('sha256', key).update(token.slice(0, payloadEnd)).digest('base64url')
    if (!sameSignature(token.slice(payloadEnd + 1), expected)) throw new Hs256Error('signature')
    const payload = jsonObject(token.slice(headerEnd + 1, payloadEnd))
    const exp = timeClaim(payload, 'exp')
    const nbf = timeClaim(payload, 'nbf')
    if (exp === undefined) throw new Hs256Error('missingExp')
    if (exp * 1000 <= nowMs) throw new Hs256Error('expired')
    if (nbf !== undefined && nbf * 1000 > nowMs) throw new Hs256Error('inactive')
    acceptedHeader = headerPart
    return payload as Hs256Payload
  }
}
