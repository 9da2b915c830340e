import { randomUUID } from 'node:crypto'
import type { RedisClient } from './client.ts'
import { defineScript, replyInteger } from './scripts.ts'

const releaseLeaseScript = defineScript(
  'releaseLease',
  (reply) => replyInteger('releaseLease', reply, 0) === 1,
)
const renewDrainLeaseScript = defineScript(
  'renewDrainLease',
  (reply) => replyInteger('renewDrainLease', reply, 0) === 1,
)

/** A short lease held by one process (SET key token NX PX): who drains or rebuilds a coupon right now. */
export interface Lease {
  /** Extends the lease; false if this holder lost it meanwhile (expired, or taken over). */
  renew(ms: number): Promise<boolean>
  /** Gives the lease up if still held; false if it was lost meanwhile. */
  release(): Promise<boolean>
}

/**
 * Leases this process took but could not release because Redis went away meanwhile. A Redis restarted from
 * its append-only file still has them, and every later taker would wait them out; this process knows its
 * own token, so its next take of the same key releases it first (the release script checks the token).
 */
const unreleased = new Map<string, string>()

/** Takes the lease `key` for `ms`, or undefined if another process holds it. */
export async function takeLease(redis: RedisClient, key: string, ms: number): Promise<Lease | undefined> {
  const stale = unreleased.get(key)
  if (stale !== undefined) {
    await releaseLeaseScript.run(redis, [key], [stale])
    unreleased.delete(key)
  }
  const token = randomUUID()
  if ((await redis.set(key, token, 'PX', ms, 'NX')) !== 'OK') return undefined
  return {
    renew: (renewMs) => renewDrainLeaseScript.run(redis, [key], [token, renewMs]),
    async release() {
      try {
        return await releaseLeaseScript.run(redis, [key], [token])
      } catch (error) {
        unreleased.set(key, token)
        throw error
      }
    },
  }
}
