/**
 * What /metrics needs of a sale's Redis state that the issuance service does not expose (the keys come from the coupon's state handle): its dead letters and
 * how old its oldest not-yet-handled request is. Read-only, a few keyed commands per sale, at scrape time.
 * A stream entry's id starts with the Redis time (ms) of the admission that appended it.
 */
import type { IssueMode } from '../domain/coupon.ts'
import { STREAM_GROUPS } from '../issuance/stream/stream-entries.ts'
import type { RedisClient } from '../redis/client.ts'
import type { CouponKeys } from '../redis/keys.ts'

export interface SaleProbe {
  /** Entries in the sale's dead-letter stream (accepted requests the writers gave up on). */
  deadLetters: number
  /** Age (s) of the oldest accepted request that is not a Postgres row yet; 0 when there is none. */
  oldestUnwrittenSeconds: number
  /** kafka mode: age (s) of the oldest accepted request the relay has not put on Kafka yet; 0 when none. */
  oldestUnrelayedSeconds: number
}

const NO_BACKLOG: SaleProbe = { deadLetters: 0, oldestUnwrittenSeconds: 0, oldestUnrelayedSeconds: 0 }

function msOfId(id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

function ageSeconds(nowMs: number, id: string | undefined): number {
  return id === undefined ? 0 : Math.max(nowMs - msOfId(id), 0) / 1000
}

/** The older of two stream ids (undefined counts as none). */
function older(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return msOfId(a) <= msOfId(b) ? a : b
}

async function firstId(redis: RedisClient, stream: string, start: string): Promise<string | undefined> {
  const [entry] = await redis.xrange(stream, start, '+', 'COUNT', 1)
  return entry?.[0]
}

/**
 * The oldest entry the relay group has not acknowledged: the oldest pending on a relay, or the first one
 * after the group's last delivered id. The relay acknowledges without deleting (the writers delete once the
 * rows exist), so the stream's first entry is not it.
 */
async function oldestUnrelayedId(redis: RedisClient, stream: string): Promise<string | undefined> {
  const groups = (await redis.xinfo('GROUPS', stream).catch(() => [])) as unknown[][]
  const group = groups.find((fields) => fields[fields.indexOf('name') + 1] === STREAM_GROUPS.kafka)
  if (group === undefined) return firstId(redis, stream, '-')
  const lastDelivered = String(group[group.indexOf('last-delivered-id') + 1])
  const [pending, undelivered] = await Promise.all([
    redis.xpending(stream, STREAM_GROUPS.kafka) as Promise<[number, string | null, ...unknown[]]>,
    firstId(redis, stream, `(${lastDelivered}`),
  ])
  return older(pending[1] ?? undefined, undelivered)
}

/** Probes one sale; only the stream and kafka modes keep requests in a Redis stream. */
export async function probeSale(
  redis: RedisClient,
  keys: CouponKeys,
  sale: { issueMode: IssueMode },
  nowMs: number,
): Promise<SaleProbe> {
  if (sale.issueMode !== 'stream' && sale.issueMode !== 'kafka') return NO_BACKLOG
  const [deadLetters, oldestUnwritten, oldestUnrelayed] = await Promise.all([
    redis.xlen(keys.deadLetters),
    firstId(redis, keys.stream, '-'),
    sale.issueMode === 'kafka' ? oldestUnrelayedId(redis, keys.stream) : undefined,
  ])
  return {
    deadLetters,
    oldestUnwrittenSeconds: ageSeconds(nowMs, oldestUnwritten),
    oldestUnrelayedSeconds: ageSeconds(nowMs, oldestUnrelayed),
  }
}
