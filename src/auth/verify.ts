import { errors, jwtVerify } from 'jose'
import type { Config, IdentityProviderConfig } from '../config/config.ts'
import { AppError } from '../domain/errors.ts'
import { Hs256Error, hs256Verifier } from './hs256.ts'
import { RemoteKeys } from './remote-keys.ts'
import { isUserId, USER_ID_RULE } from './user-id.ts'
import { VerifiedTokens } from './verified-tokens.ts'

/**
 * Checks a user token and gives the user id it names: at once when it can (HS256, a cached token), else a
 * promise. Fails (throws, or rejects) UNAUTHENTICATED (401) when the token does not hold, UNAVAILABLE (503)
 * when the identity provider's keys are needed and cannot be had.
 */
export type UserTokenVerifier = (token: string) => string | Promise<string>

interface Verified {
  userId: string
  expiresAtMs: number
}

/** The user id a verified token names in `claim`, held to the user-id rules. */
function userIdFrom(payload: Record<string, unknown>, claim: string): string {
  const userId = payload[claim]
  if (isUserId(userId)) return userId
  const named = claim === 'sub' ? 'the token subject' : `the token claim ${claim}`
  throw new AppError('UNAUTHENTICATED', `${named} must be ${USER_ID_RULE}`)
}

function hs256Failure(error: unknown): string {
  switch (error instanceof Hs256Error ? error.failure : undefined) {
    case 'expired':
      return 'the token has expired'
    case 'missingExp':
      return 'the token must carry an expiry (exp)'
    default:
      return 'the token is not valid'
  }
}

/**
 * HS256 with a shared secret (development, and the default): algorithm pinned, `exp` required and honoured
 * (a token without it would never expire), the user id in `sub`. A lean verifier with the key prepared once
 * (hs256.ts): fast-jwt's cost twice that per distinct token, and every request of a sale is a new token.
 */
function hs256Check(secret: string): (token: string) => Verified {
  const verify = hs256Verifier(secret)
  return (token) => {
    let payload: Record<string, unknown> & { exp: number }
    try {
      payload = verify(token)
    } catch (error) {
      throw new AppError('UNAUTHENTICATED', hs256Failure(error))
    }
    return { userId: userIdFrom(payload, 'sub'), expiresAtMs: payload.exp * 1000 }
  }
}

function idpFailure(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'the token has expired'
  if (error instanceof errors.JWTClaimValidationFailed)
    return `the token's ${error.claim} claim is not accepted`
  if (error instanceof errors.JWKSNoMatchingKey)
    return 'the token is not signed with a key of the identity provider'
  return 'the token is not valid'
}

/**
 * Tokens of the shop's identity provider: signed with one of its published keys, by an allowed asymmetric
 * algorithm (so `none` and HS256 forged with a public key are refused), with the expected `iss` and `aud`
 * and an `exp`; the user id in the configured claim.
 */
function idpCheck(idp: IdentityProviderConfig, keys: RemoteKeys): (token: string) => Promise<Verified> {
  const options = {
    algorithms: idp.algorithms,
    audience: idp.audience,
    requiredClaims: ['exp'],
    ...(idp.issuer === undefined ? {} : { issuer: idp.issuer }),
  }
  return async (token) => {
    let payload: Record<string, unknown> & { exp?: number }
    try {
      ;({ payload } = await jwtVerify(token, keys.getKey, options))
    } catch (error) {
      if (error instanceof AppError) throw error // the provider is unreachable: 503
      throw new AppError('UNAUTHENTICATED', idpFailure(error))
    }
    return { userId: userIdFrom(payload, idp.userClaim), expiresAtMs: payload.exp! * 1000 }
  }
}

/**
 * The user-token verifier the configuration asks for. HS256 is checked at once, without the verified-token
 * cache: a miss and a remember of a distinct token cost 4.5–4.8 µs, more than the lean check itself
 * (3.4–3.8 µs), and nearly every request of a sale is a new token. The identity provider's tokens (an
 * asymmetric signature, keys fetched) have the cache in front.
 */
export function userTokenVerifier(
  config: Pick<Config, 'jwtSecret' | 'identityProvider' | 'verifiedTokenCacheSize'>,
): UserTokenVerifier {
  const idp = config.identityProvider
  if (idp === undefined) {
    const check = hs256Check(config.jwtSecret)
    return (token) => check(token).userId
  }
  const verified = new VerifiedTokens(config.verifiedTokenCacheSize)
  const keys = new RemoteKeys({
    issuer: idp.issuer,
    jwksUrl: idp.jwksUrl,
    refetchMinMs: idp.keysRefetchMinMs,
    maxAgeMs: idp.keysMaxAgeMs,
    onKeyRemoved: () => verified.clear(),
  })
  const check = idpCheck(idp, keys)
  return (token) => {
    keys.keepFresh()
    const cached = verified.get(token, Date.now())
    if (cached !== undefined) return cached
    return check(token).then(({ userId, expiresAtMs }) => {
      verified.remember(token, userId, expiresAtMs)
      return userId
    })
  }
}
