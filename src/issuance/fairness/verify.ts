import { createPublicKey, type KeyObject } from 'node:crypto'
import type { Receipt } from '../../domain/coupon.ts'
import type { OrderLogEntry } from '../../storage/order-log.ts'
import type { PublicOrderLog } from './order-log.ts'
import { verifyReceipt } from './receipts.ts'
import { saltedUserHash, shuffleKey } from './shuffle.ts'

/** What checking a receipt against the key and the order log found. */
export interface ReceiptCheck {
  /** The signature holds and the person was treated in order. */
  ok: boolean
  /** One line per check, failed ones first word "FAIL". */
  lines: string[]
}

/** The receipt key as GET /.well-known/coupon-rush-receipt-key serves it (an OKP Ed25519 JWK). */
export function receiptKeyFromJwk(jwk: { kty: string; crv: string; x: string }): KeyObject {
  return createPublicKey({ key: jwk, format: 'jwk' })
}

/**
 * Checks a receipt: its signature, then that the order log holds the person where the receipt says, and
 * that nobody placed behind them was treated better (issued while they were sold out, or admitted before
 * them); for a pre-queue receipt, in the pre-queue's published order (arrival place, or shuffle key
 * recomputed from the revealed seed).
 */
export function checkReceipt(receipt: Receipt, key: KeyObject, log: PublicOrderLog): ReceiptCheck {
  const lines: string[] = []
  const check = (ok: boolean, what: string) => lines.push(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
  check(verifyReceipt(receipt, key), 'signature matches the service key')
  check(log.couponId === receipt.couponId, `order log is coupon ${receipt.couponId}'s`)
  const mine = log.entries.find(
    (entry) => entry.userHash === saltedUserHash(Buffer.from(log.salt, 'hex'), receipt.userId),
  )
  check(mine !== undefined, 'the user is in the order log')
  if (mine !== undefined) {
    if (receipt.position !== undefined) checkPosition(receipt.position, mine, log.entries, check)
    if (receipt.prequeuePlace !== undefined) checkPrequeue(receipt, mine, log, check)
  }
  return { ok: lines.every((line) => line.startsWith('ok')), lines }
}

type Check = (ok: boolean, what: string) => void

function checkPosition(position: number, mine: OrderLogEntry, entries: OrderLogEntry[], check: Check): void {
  check(mine.position === position, `the log holds position ${position} for this user`)
  if (mine.outcome === 'SOLD_OUT') {
    const later = entries.find((entry) => entry.outcome === 'ISSUED' && (entry.position ?? 0) > position)
    check(later === undefined, 'nobody at a later position was issued while this user was sold out')
  }
}

function checkPrequeue(receipt: Receipt, mine: OrderLogEntry, log: PublicOrderLog, check: Check): void {
  check(
    mine.prequeuePlace === receipt.prequeuePlace,
    `the log holds pre-queue place ${receipt.prequeuePlace}`,
  )
  const prequeued = log.entries.filter((entry) => entry.prequeuePlace !== null)
  if (log.prequeueOrder === 'shuffle' && log.seed !== null) {
    const expected = shuffleKey(Buffer.from(log.seed, 'hex'), receipt.userId)
    if (mine.shuffleKey !== null) {
      check(mine.shuffleKey === expected, 'the shuffle key is HMAC-SHA256(revealed seed, userId)')
    }
    // The shuffled (joined before the start) by key, then those who joined after the start by place.
    prequeued.sort((a, b) => {
      if (a.shuffleKey !== null && b.shuffleKey !== null) return a.shuffleKey < b.shuffleKey ? -1 : 1
      if (a.shuffleKey !== null || b.shuffleKey !== null) return a.shuffleKey !== null ? -1 : 1
      return (a.prequeuePlace ?? 0) - (b.prequeuePlace ?? 0)
    })
  } else {
    prequeued.sort((a, b) => (a.prequeuePlace ?? 0) - (b.prequeuePlace ?? 0))
  }
  const index = prequeued.indexOf(mine)
  const before = prequeued.slice(0, index)
  const after = prequeued.slice(index + 1)
  const admittedEarlier = (a: OrderLogEntry, b: OrderLogEntry) =>
    a.position !== null && (b.position === null || a.position < b.position)
  check(
    mine.position === null || before.every((entry) => admittedEarlier(entry, mine)),
    'everyone before this user in the pre-queue order was admitted before them',
  )
  check(
    mine.outcome === 'SOLD_OUT' ||
      after.every((entry) => entry.position === null || admittedEarlier(mine, entry)),
    'nobody after this user in the pre-queue order was admitted before them',
  )
  if (mine.outcome === 'SOLD_OUT') {
    check(
      after.every((entry) => entry.outcome === 'SOLD_OUT'),
      'nobody after this user in the pre-queue order was issued',
    )
  }
  const firstLater = Math.min(
    ...log.entries
      .filter((entry) => entry.prequeuePlace === null && entry.position !== null)
      .map((entry) => entry.position ?? 0),
  )
  check(
    mine.position === null || mine.position < firstLater,
    'admitted before everyone who came after the start',
  )
}
