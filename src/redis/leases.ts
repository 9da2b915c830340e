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

/** Takes the lease `key` for `ms`, or undefined if another process holds it. */
export async function takeLease(redis: RedisClient, key: string, ms: number): Promise<Lease | undefined> {
  const token = randomUUID()
  if ((await redis.set(key, token, 'PX', ms, 'NX')) !== 'OK') return undefined
  return {
    renew: (renewMs) => renewDrainLeaseScript.run(redis, [key], [token, renewMs]),
    release: () => releaseLeaseScript.run(redis, [key], [token]),
  }
}
