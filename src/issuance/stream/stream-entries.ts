import type { RedisClient } from '../../redis/client.ts'
import { defineScript, replyInteger } from '../../redis/scripts.ts'
import type { CouponStates } from '../core/coupon-state.ts'
import type { PendingSource } from '../core/rebuild.ts'

/** Consumer groups on a coupon's stream: Postgres writers (stream mode) or the Kafka relay (kafka mode). */
export const STREAM_GROUPS = { stream: 'writers', kafka: 'relay' } as const

export interface StreamEntry {
  id: string
  userId: string
  position: number
  requestedAtMs: number
}

/**
 * Reads an entry's fields: `[e, "userId|position|requestedAtMs"]` as admitStream and movePrequeue write it
 * (user ids hold no `|`, auth/user-id.ts), or the older `[u, userId, p, position, t, ms]`.
 */
export function streamFields(fields: string[]): Omit<StreamEntry, 'id'> {
  const { userId, position, requestedAtMs } = streamEntry('', fields)
  return { userId, position, requestedAtMs }
}

/**
 * An entry's fields as admitStream and movePrequeue write them (includes/record.lua `streamEntryValue`), for
 * what writes entries from outside the scripts (the bench's writer floor): the layout `streamFields` reads.
 */
export function streamEntryFields(userId: string, position: number, requestedAtMs: number): ['e', string] {
  return ['e', `${userId}|${position}|${requestedAtMs}`]
}

/** The entry `id` with its fields, as one object (the writers read thousands per batch). */
function streamEntry(id: string, fields: string[]): StreamEntry {
  // The layout the scripts write, read without building a map or splitting into an array.
  if (fields.length === 2 && fields[0] === 'e') {
    const packed = fields[1]!
    const second = packed.lastIndexOf('|')
    const first = packed.lastIndexOf('|', second - 1)
    if (first > 0) {
      return {
        id,
        userId: packed.slice(0, first),
        position: Number(packed.slice(first + 1, second)),
        requestedAtMs: Number(packed.slice(second + 1)),
      }
    }
  }
  if (fields.length === 6 && fields[0] === 'u' && fields[2] === 'p' && fields[4] === 't') {
    return { id, userId: fields[1]!, position: Number(fields[3]), requestedAtMs: Number(fields[5]) }
  }
  const map = new Map<string, string>()
  for (let i = 0; i < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!)
  const userId = map.get('u') ?? ''
  return { id, userId, position: Number(map.get('p')), requestedAtMs: Number(map.get('t')) }
}

// The stream commands' replies, read without casts: a reply of another shape is a contract break and throws.

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string')
}

function listOf(what: string, value: unknown): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${what}: not a list`)
  return value
}

/** Entries `[[id, fields], ...]`; an entry deleted meanwhile (XAUTOCLAIM gives `[id, null]`) is skipped. */
function entriesOf(what: string, raw: unknown): StreamEntry[] {
  const entries: StreamEntry[] = []
  for (const item of listOf(what, raw)) {
    const [id, fields] = listOf(what, item)
    if (typeof id !== 'string') throw new Error(`${what}: an entry without an id`)
    if (fields === null) continue
    if (!isStringList(fields)) throw new Error(`${what}: entry ${id} has no field list`)
    entries.push(streamEntry(id, fields))
  }
  return entries
}

/** An XREADGROUP reply on one stream (`[[key, entries]]`, or null when nothing arrived). */
export function readGroupEntries(reply: unknown): StreamEntry[] {
  if (reply === null) return []
  const [stream] = listOf('XREADGROUP', reply)
  if (stream === undefined) return []
  return entriesOf('XREADGROUP', listOf('XREADGROUP', stream)[1] ?? [])
}

/** An XAUTOCLAIM reply `[cursor, entries, deletedIds]`. */
export function autoclaimEntries(reply: unknown): { cursor: string; entries: StreamEntry[] } {
  const [cursor, entries] = listOf('XAUTOCLAIM', reply)
  if (typeof cursor !== 'string') throw new Error('XAUTOCLAIM: no cursor')
  return { cursor, entries: entriesOf('XAUTOCLAIM', entries) }
}

/** An extended XPENDING reply `[[id, consumer, idleMs, deliveries], ...]` as deliveries by entry id. */
export function deliveryCounts(reply: unknown): Map<string, number> {
  const counts = new Map<string, number>()
  for (const item of listOf('XPENDING', reply)) {
    const [id, , , deliveries] = listOf('XPENDING', item)
    if (typeof id !== 'string' || typeof deliveries !== 'number') throw new Error('XPENDING: bad entry')
    counts.set(id, deliveries)
  }
  return counts
}

const ackAndTrimScript = defineScript('ackAndTrim', (reply) => ({
  acknowledged: replyInteger('ackAndTrim', reply, 0),
  trimmed: replyInteger('ackAndTrim', reply, 1),
}))

/**
 * Acknowledges a written batch and trims every entry the group is done with (up to the oldest still
 * pending), in one call: see ackAndTrim-1.lua. For a stream whose only group is `group`.
 */
export function acknowledgeAndTrim(
  redis: RedisClient,
  stream: string,
  group: string,
  ids: string[],
): Promise<{ acknowledged: number; trimmed: number }> {
  return ackAndTrimScript.run(redis, [stream], [group, ...ids])
}

/** Entries pending on the group's consumers (read, not acknowledged); throws NOGROUP if the group is gone. */
export async function pendingCount(redis: RedisClient, stream: string, group: string): Promise<number> {
  const [count] = listOf('XPENDING', await redis.xpending(stream, group))
  if (typeof count !== 'number') throw new Error('XPENDING: no count')
  return count
}

export async function ensureGroup(redis: RedisClient, stream: string, group: string): Promise<void> {
  try {
    await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM')
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error
  }
}

/**
 * The stream's rebuild input: its entries are accepted requests not yet written, each holding a unit of
 * stock. Also makes sure the consumer group exists (the stream may have been lost with the state).
 */
export function streamPending(states: CouponStates, group: string): PendingSource {
  return async (coupon) => {
    const { redis, keys } = states.of(coupon.id)
    const entries = await redis.xrange(keys.stream, '-', '+')
    await ensureGroup(redis, keys.stream, group)
    return {
      reserveStock: true,
      records: entries.map(([, fields]) => {
        const entry = streamFields(fields)
        const record = {
          status: 'ACCEPTED',
          position: entry.position,
          requestedAtMs: entry.requestedAtMs,
        } as const
        return [entry.userId, record]
      }),
    }
  }
}
