import { createSigner } from 'fast-jwt'

/** Signs a user JWT (HS256, `sub` = user id), for `coupon-rush token`, tests, the demo and the benchmark. */
export function signUserToken(secret: string, userId: string, expiresInSeconds = 3_600): string {
  return createSigner({ key: secret, algorithm: 'HS256', expiresIn: expiresInSeconds * 1000 })({
    sub: userId,
  })
}
