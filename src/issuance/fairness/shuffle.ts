import { createHash, createHmac } from 'node:crypto'

/*
 * The pre-queue's shuffle, a documented deterministic function of the seed and the pre-queued users
 * (docs/api.md "Pre-queue"): anyone holding the revealed seed and the list recomputes the same order, and the
 * seed cannot change after its commitment SHA-256(seed) was published.
 */

/** hex HMAC-SHA256(seed, userId): the user's sort key in the shuffled order. */
export function shuffleKey(seed: Buffer, userId: string): string {
  return createHmac('sha256', seed).update(userId, 'utf8').digest('hex')
}

/** The users sorted by shuffle key, hex ascending (distinct users cannot tie). */
export function shuffledOrder(seed: Buffer, userIds: string[]): string[] {
  return userIds
    .map((userId) => ({ userId, key: shuffleKey(seed, userId) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map((entry) => entry.userId)
}

/** hex SHA-256 of the seed: the commitment published from the pre-queue's opening. */
export function seedCommitment(seed: Buffer): string {
  return createHash('sha256').update(seed).digest('hex')
}

/** hex SHA-256(salt || userId): how the public order log names a user. */
export function saltedUserHash(salt: Buffer, userId: string): string {
  return createHash('sha256').update(salt).update(userId, 'utf8').digest('hex')
}
