/**
 * Pure rules of the per-coupon proof of work (ALTCHA v1 challenges: find the number n, 1 <= n <= maxNumber,
 * with SHA-256(salt + n) = challenge). The salt carries who and what a challenge is for, so a solution
 * cannot be spent on another coupon, by another user, or after it expires; src/http/plugins/proof-of-work.ts
 * does the I/O (signing, verifying, the replay record in Redis).
 */
import { type Static, Type } from 'typebox'

export const DEFAULT_POW_MAX_NUMBER = 100_000

/** The coupon's setting: its presence turns the proof of work on; maxNumber sets the difficulty. */
export const ProofOfWork = Type.Object(
  {
    maxNumber: Type.Optional(
      Type.Integer({
        minimum: 1_000,
        maximum: 10_000_000,
        description: `difficulty: a solve takes maxNumber / 2 SHA-256 hashes on average (default ${DEFAULT_POW_MAX_NUMBER})`,
      }),
    ),
  },
  { additionalProperties: false },
)
export type ProofOfWork = Required<Static<typeof ProofOfWork>>

/** A request's setting with its default filled in. */
export function proofOfWorkSetting(requested: Static<typeof ProofOfWork>): ProofOfWork {
  return { maxNumber: requested.maxNumber ?? DEFAULT_POW_MAX_NUMBER }
}

/** What the salt of a challenge binds it to (ALTCHA salt parameters; `expires` is added by altcha-lib). */
export function challengeParams(couponId: number, userId: string): Record<string, string> {
  return { coupon: String(couponId), user: userId }
}

/** Why a solution whose signature and hash check out is still not for this request; undefined: it is. */
export function misboundSolution(
  params: Record<string, string>,
  couponId: number,
  userId: string,
  nowMs: number,
): string | undefined {
  if (params.coupon !== String(couponId)) return 'the challenge was given for another coupon'
  if (params.user !== userId) return 'the challenge was given to another user'
  const expiresMs = Number(params.expires) * 1000
  if (!Number.isFinite(expiresMs) || expiresMs <= nowMs) return 'the challenge has expired'
  return undefined
}

/** How long the replay record of a solution must live: until its challenge expires (at least 1 ms). */
export function replayRecordTtlMs(params: Record<string, string>, nowMs: number): number {
  return Math.max(1, Number(params.expires) * 1000 - nowMs)
}
