import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { couponStatus } from '../src/domain/coupon.ts'
import { discountFor } from '../src/domain/discount.ts'
import { expiryOf, userCouponStatus } from '../src/domain/user-coupon.ts'
import { decodeRecord, encodeRecord, type IssuanceRecord } from '../src/issuance/core/record.ts'

describe('discounts', () => {
  it('takes min(amount, order) for FIXED and floor(order × percent / 100) capped by maxAmount for RATE', () => {
    assert.equal(discountFor({ type: 'FIXED', amount: 5000 }, 12000), 5000)
    assert.equal(discountFor({ type: 'FIXED', amount: 5000 }, 3000), 3000)
    assert.equal(discountFor({ type: 'RATE', percent: 15 }, 9999), 1499)
    assert.equal(discountFor({ type: 'RATE', percent: 15, maxAmount: 1000 }, 9999), 1000)
  })

  it('never discounts more than the order nor less than zero', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ type: fc.constant('FIXED' as const), amount: fc.integer({ min: 1, max: 1e9 }) }),
          fc.record(
            {
              type: fc.constant('RATE' as const),
              percent: fc.integer({ min: 1, max: 100 }),
              maxAmount: fc.integer({ min: 1, max: 1e9 }),
            },
            { requiredKeys: ['type', 'percent'] },
          ),
        ),
        fc.integer({ min: 1, max: 1e9 }),
        (discount, orderAmount) => {
          const amount = discountFor(discount, orderAmount)
          return Number.isInteger(amount) && amount >= 0 && amount <= orderAmount
        },
      ),
    )
  })
})

describe('coupon and user coupon status', () => {
  const window = {
    issueStartsAt: new Date('2026-01-01T10:00:00Z'),
    issueEndsAt: new Date('2026-01-01T11:00:00Z'),
  }
  it('is SCHEDULED before the window, ISSUING or SOLD_OUT inside it and ENDED after it', () => {
    assert.equal(couponStatus(window, 5, new Date('2026-01-01T09:59:59Z')), 'SCHEDULED')
    assert.equal(couponStatus(window, 5, new Date('2026-01-01T10:00:00Z')), 'ISSUING')
    assert.equal(couponStatus(window, 0, new Date('2026-01-01T10:30:00Z')), 'SOLD_OUT')
    assert.equal(couponStatus(window, 5, new Date('2026-01-01T11:00:00Z')), 'ENDED')
  })

  it('expires at the earlier of validDays and validUntil', () => {
    const issuedAt = new Date('2026-01-01T10:00:00Z')
    assert.equal(
      expiryOf({ validDays: 7, validUntil: null }, issuedAt).toISOString(),
      '2026-01-08T10:00:00.000Z',
    )
    assert.equal(
      expiryOf({ validDays: 7, validUntil: new Date('2026-01-03T00:00:00Z') }, issuedAt).toISOString(),
      '2026-01-03T00:00:00.000Z',
    )
    assert.equal(
      userCouponStatus(null, new Date('2026-01-03T00:00:00Z'), new Date('2026-01-04T00:00:00Z')),
      'EXPIRED',
    )
    assert.equal(
      userCouponStatus(new Date(), new Date('2026-01-03T00:00:00Z'), new Date('2026-01-04T00:00:00Z')),
      'REDEEMED',
    )
  })
})

describe('issuance records', () => {
  it('round-trip through the encoding the Lua scripts share', () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            status: fc.constantFrom('PENDING', 'ACCEPTED', 'ISSUED', 'SOLD_OUT'),
            position: fc.integer({ min: 1, max: 1e7 }),
            requestedAtMs: fc.integer({ min: 0, max: 4e12 }),
            userCouponId: fc.integer({ min: 1, max: 1e12 }),
            decidedAtMs: fc.integer({ min: 0, max: 4e12 }),
          },
          { requiredKeys: ['status', 'position', 'requestedAtMs'] },
        ),
        (record) => {
          assert.deepEqual(decodeRecord(encodeRecord(record as IssuanceRecord)), { ...record })
        },
      ),
    )
    assert.deepEqual(decodeRecord('A|3|1700000000000||'), {
      status: 'ACCEPTED',
      position: 3,
      requestedAtMs: 1700000000000,
    })
  })
})
