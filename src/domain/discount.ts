/** Discounts: their shape and what one takes off an order. Pure rules, no I/O. */
import { type Static, Type } from 'typebox'

/** The largest amount of money anywhere in the API (discounts, orders). */
export const MAX_AMOUNT = 1_000_000_000
export const Amount = Type.Integer({ minimum: 1, maximum: MAX_AMOUNT })

export const Discount = Type.Union(
  [
    Type.Object({ type: Type.Literal('FIXED'), amount: Amount }, { additionalProperties: false }),
    Type.Object(
      {
        type: Type.Literal('RATE'),
        percent: Type.Integer({ minimum: 1, maximum: 100 }),
        maxAmount: Type.Optional(Amount),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'FIXED: a fixed amount off; RATE: a percentage off, optionally capped' },
)
export type Discount = Static<typeof Discount>

/** The discount for an order: FIXED takes min(amount, order); RATE floors order×percent/100, capped. */
export function discountFor(discount: Discount, orderAmount: number): number {
  if (discount.type === 'FIXED') return Math.min(discount.amount, orderAmount)
  const byRate = Math.floor((orderAmount * discount.percent) / 100)
  return discount.maxAmount === undefined ? byRate : Math.min(byRate, discount.maxAmount)
}
