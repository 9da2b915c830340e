import type { Issuance, IssuanceStatus } from '../../domain/coupon.ts'

/*
 * The issuance record codec, the TypeScript twin of src/redis/scripts/includes/record.lua: a user's record in
 * the coupon's users hash is `S|position|requestedAtMs|userCouponId|decidedAtMs`, S one of W (waiting in the pre-queue; the position field holds
 * its arrival place), P (pending),
 * A (accepted), I (issued), X (sold out). A record only ever moves forward (P/A -> I or X).
 */

const STATUS_BY_LETTER: Record<string, IssuanceStatus> = {
  W: 'WAITING',
  P: 'PENDING',
  A: 'ACCEPTED',
  I: 'ISSUED',
  X: 'SOLD_OUT',
}
const LETTER_BY_STATUS: Record<IssuanceStatus, string> = {
  WAITING: 'W',
  PENDING: 'P',
  ACCEPTED: 'A',
  ISSUED: 'I',
  SOLD_OUT: 'X',
}

export interface IssuanceRecord {
  status: IssuanceStatus
  position: number
  requestedAtMs: number
  userCouponId?: number
  decidedAtMs?: number
}

/**
 * `encodeRecord` of an ISSUED record from its parts, without building the record: the writers encode one per
 * row (`userCouponId` as the row id, text or number).
 */
export function encodeIssued(
  position: number,
  requestedAtMs: number,
  userCouponId: number | string,
  decidedAtMs: number,
): string {
  return `I|${position}|${requestedAtMs}|${userCouponId}|${decidedAtMs}`
}

export function encodeRecord(record: IssuanceRecord): string {
  const { status, position, requestedAtMs, userCouponId = '', decidedAtMs = '' } = record
  return `${LETTER_BY_STATUS[status]}|${position}|${requestedAtMs}|${userCouponId}|${decidedAtMs}`
}

export function decodeRecord(raw: string): IssuanceRecord {
  const [letter = '', position = '', requestedAt = '', userCouponId = '', decidedAt = ''] = raw.split('|')
  const status = STATUS_BY_LETTER[letter]
  if (status === undefined) throw new Error(`bad issuance record "${raw}"`)
  return {
    status,
    position: Number(position),
    requestedAtMs: Number(requestedAt),
    ...(userCouponId === '' ? {} : { userCouponId: Number(userCouponId) }),
    ...(decidedAt === '' ? {} : { decidedAtMs: Number(decidedAt) }),
  }
}

/** The record as the API shows it. */
export function toIssuance(couponId: number, userId: string, record: IssuanceRecord): Issuance {
  return {
    couponId,
    userId,
    status: record.status,
    // A WAITING record's number is its pre-queue place; a pre-queued user resolved SOLD_OUT has no position.
    ...(record.status === 'WAITING'
      ? { prequeuePlace: record.position }
      : record.position > 0
        ? { position: record.position }
        : {}),
    ...(record.userCouponId === undefined ? {} : { userCouponId: record.userCouponId }),
    requestedAt: new Date(record.requestedAtMs).toISOString(),
    ...(record.decidedAtMs === undefined ? {} : { decidedAt: new Date(record.decidedAtMs).toISOString() }),
  }
}
