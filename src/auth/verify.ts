import { createVerifier } from 'fast-jwt'
import { AppError } from '../domain/errors.ts'
import { isUserId, USER_ID_RULE } from './user-id.ts'

/** Checks a user token and gives the user id it names; throws UNAUTHENTICATED (401) when it does not hold. */
export type UserTokenVerifier = (token: string) => Promise<string>

function hs256Failure(error: unknown): string {
  switch ((error as { code?: string }).code) {
    case 'FAST_JWT_EXPIRED':
      return 'the token has expired'
    case 'FAST_JWT_MISSING_REQUIRED_CLAIM':
      return 'the token must carry an expiry (exp)'
    default:
      return 'the token is not valid'
  }
}

/** The user id a verified token names in `claim`, held to the user-id rules. */
export function userIdFrom(payload: Record<string, unknown>, claim: string): string {
  const userId = payload[claim]
  if (isUserId(userId)) return userId
  const named = claim === 'sub' ? 'the token subject' : `the token claim ${claim}`
  throw new AppError('UNAUTHENTICATED', `${named} must be ${USER_ID_RULE}`)
}

/**
 * HS256 with a shared secret (development, and the default): algorithm pinned, `exp` required and honoured
 * (a token without it would never expire), the user id in `sub`.
 */
export function hs256Verifier(secret: string): UserTokenVerifier {
  const verify = createVerifier({ key: secret, algorithms: ['HS256'], requiredClaims: ['exp'] })
  return async (token) => {
    let payload: Record<string, unknown>
    try {
      payload = verify(token)
    } catch (error) {
      throw new AppError('UNAUTHENTICATED', hs256Failure(error))
    }
    return userIdFrom(payload, 'sub')
  }
}
