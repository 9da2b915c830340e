import { couponKeys } from '../../redis/keys.ts'
import type { IssuanceContext } from '../context.ts'
import type { PendingSource } from '../coupon-store.ts'

/** Consumer groups on a coupon's stream: Postgres writers (stream mode) or the Kafka relay (kafka mode). */
export const STREAM_GROUPS = { stream: 'writers', kafka: 'relay' } as const

export interface StreamEntry {
  id: string
  userId: string
  position: number
  requestedAtMs: number
}

/** Reads the flat field list `[u, userId, p, position, t, ms]` that admitStream writes. */
export function streamFields(fields: string[]): Omit<StreamEntry, 'id'> {
  // The layout admitStream writes, read without building a map (the writers read thousands per batch).
  if (fields.length === 6 && fields[0] === 'u' && fields[2] === 'p' && fields[4] === 't')
    return { userId: fields[1]!, position: Number(fields[3]), requestedAtMs: Number(fields[5]) }
  const map = new Map<string, string>()
  for (let i = 0; i < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!)
  return { userId: map.get('u') ?? '', position: Number(map.get('p')), requestedAtMs: Number(map.get('t')) }
}

export async function ensureGroup(ctx: IssuanceContext, stream: string, group: string): Promise<void> {
  try {
    await ctx.redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM')
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error
  }
}

/**
 * The stream's rebuild input: its entries are accepted requests not yet written, each holding a unit of
 * stock. Also makes sure the consumer group exists (the stream may have been lost with the state).
 */
export function streamPending(ctx: IssuanceContext, group: string): PendingSource {
  return async (coupon) => {
    const { stream } = couponKeys(ctx.redisPrefix, coupon.id)
    const entries = await ctx.redis.xrange(stream, '-', '+')
    await ensureGroup(ctx, stream, group)
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
