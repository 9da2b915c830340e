import { Type } from 'typebox'
import { NewCouponFields } from '../../domain/coupon.ts'
import { Discount } from '../../domain/discount.ts'
import { ProofOfWork } from '../../domain/proof-of-work.ts'
import { CouponStats, couponViewFields, IssueMode, PrequeueOrder } from './coupon.ts'

/** The admin's views and bodies: creating and steering coupons, their history and audit. */

/** The days a coupon stays usable: the non-null branch of the rule (the request omits it instead). */
const ValidDays = NewCouponFields.properties.validDays.anyOf[0]

export const CreateCouponBody = Type.Object(
  {
    name: NewCouponFields.properties.name,
    discount: Discount,
    quantity: NewCouponFields.properties.quantity,
    issueStartsAt: Type.String({ format: 'date-time' }),
    issueEndsAt: Type.String({ format: 'date-time' }),
    validDays: Type.Optional(ValidDays),
    validUntil: Type.Optional(Type.String({ format: 'date-time', description: 'must be after issueEndsAt' })),
    issueMode: Type.Optional(IssueMode),
    proofOfWork: Type.Optional({
      ...ProofOfWork,
      description: 'each issuance request must carry a solved ALTCHA challenge (GET /coupons/{id}/challenge)',
    }),
    minOrderAmount: Type.Optional(NewCouponFields.properties.minOrderAmount.anyOf[0]),
    prequeueStartsAt: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'opens a pre-queue (stream, queue, kafka); before issueStartsAt',
      }),
    ),
    prequeueOrder: Type.Optional(PrequeueOrder),
  },
  { additionalProperties: false },
)

export const AdminCoupon = Type.Object({
  ...couponViewFields,
  validDays: Type.Union([Type.Integer(), Type.Null()]),
  validUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  paused: Type.Boolean({ description: 'issuance refused with ISSUE_PAUSED while true' }),
  stats: Type.Optional(CouponStats),
})

/** PATCH /admin/coupons/{id}: any of the steerable fields (which change is allowed when: docs/api.md). */
export const PatchCouponBody = Type.Object(
  {
    name: Type.Optional(NewCouponFields.properties.name),
    issueStartsAt: Type.Optional(
      Type.String({ format: 'date-time', description: 'only before the sale starts, not in the past' }),
    ),
    issueEndsAt: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'later extends, earlier shortens; now or past ends it now',
      }),
    ),
    quantity: Type.Optional({ ...NewCouponFields.properties.quantity, description: 'can only grow' }),
    paused: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
)

/** The admin making a change, recorded in the coupon's history (the admin token names nobody). */
export const AdminNameHeaders = Type.Object({
  'x-admin-name': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[\\x20-\\x7e]+$',
      description: 'who makes the change, for the history; "admin" when absent',
    }),
  ),
})

const ChangedValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()])

/** One entry of GET /admin/coupons/{id}/history. */
export const CouponChange = Type.Object({
  id: Type.Integer(),
  couponId: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
  admin: Type.String(),
  change: Type.Record(
    Type.String(),
    Type.Union([Type.Object({ from: ChangedValue, to: ChangedValue }), Type.Boolean()]),
    { description: '{ field: { from, to } } for each field a PATCH changed; { deleted: true } for a DELETE' },
  ),
})

export const Audit = Type.Object({
  quantity: Type.Integer(),
  issuedRows: Type.Integer(),
  duplicateRows: Type.Integer(),
  overIssued: Type.Integer(),
  acceptedNotYetIssued: Type.Integer(),
  deadLettered: Type.Integer(),
  inconsistencies: Type.Array(Type.String()),
})
