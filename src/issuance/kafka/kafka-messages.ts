import type { Issuance } from '../../domain/coupon.ts'
import type { StreamEntry } from '../stream/stream-entries.ts'

/** One accepted request on the requests topic (key: the coupon id, so a coupon keeps one partition). */
export interface RequestMessage {
  couponId: number
  userId: string
  position: number
  requestedAtMs: number
  /** The Redis stream entry it came from: tells a relay's re-publication from a second request. */
  entryId?: string
}

/** One issued coupon on the issued topic. */
export interface IssuedEvent {
  couponId: number
  userId: string
  userCouponId: number
  position: number
  issuedAt: string
}

const USER_ID = /^[A-Za-z0-9._:-]{1,64}$/

export function encodeRequest(couponId: number, entry: StreamEntry): string {
  const message: RequestMessage = {
    couponId,
    userId: entry.userId,
    position: entry.position,
    requestedAtMs: entry.requestedAtMs,
    entryId: entry.id,
  }
  return JSON.stringify(message)
}

/** The request in a consumed message, or why it cannot be one (such a message is parked, never retried). */
export function parseRequest(
  key: string | undefined,
  value: string | undefined,
): RequestMessage | { invalid: string } {
  if (value === undefined || value === '') return { invalid: 'empty value' }
  let raw: unknown
  try {
    raw = JSON.parse(value)
  } catch {
    return { invalid: 'value is not JSON' }
  }
  if (typeof raw !== 'object' || raw === null) return { invalid: 'value is not an object' }
  const { couponId, userId, position, requestedAtMs, entryId } = raw as Record<string, unknown>
  if (!Number.isSafeInteger(couponId) || (couponId as number) < 1) return { invalid: 'bad couponId' }
  if (key !== String(couponId)) return { invalid: 'key is not the couponId' }
  if (typeof userId !== 'string' || !USER_ID.test(userId)) return { invalid: 'bad userId' }
  if (!Number.isSafeInteger(position) || (position as number) < 1) return { invalid: 'bad position' }
  if (!Number.isSafeInteger(requestedAtMs) || (requestedAtMs as number) < 0) {
    return { invalid: 'bad requestedAtMs' }
  }
  return {
    couponId: couponId as number,
    userId,
    position: position as number,
    requestedAtMs: requestedAtMs as number,
    ...(typeof entryId === 'string' && /^\d+-\d+$/.test(entryId) ? { entryId } : {}),
  }
}

export function issuedEvent(issuance: Issuance): IssuedEvent | undefined {
  if (issuance.status !== 'ISSUED' || issuance.userCouponId === undefined) return undefined
  return {
    couponId: issuance.couponId,
    userId: issuance.userId,
    userCouponId: issuance.userCouponId,
    position: issuance.position ?? 0,
    issuedAt: issuance.decidedAt ?? new Date().toISOString(),
  }
}
