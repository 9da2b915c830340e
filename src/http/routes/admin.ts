import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Coupon, CouponStats } from '../../domain/coupon.ts'
import {
  AdminCoupon,
  Audit,
  CouponStats as CouponStatsSchema,
  CreateCouponBody,
  EventStreamQuery,
  errors,
  Id,
  IdParams,
} from '../schemas.ts'
import { openEventStream } from '../sse.ts'

function adminView(coupon: Coupon, stats?: CouponStats) {
  return {
    id: coupon.id,
    name: coupon.name,
    discount: coupon.discount,
    quantity: coupon.quantity,
    issueStartsAt: coupon.issueStartsAt.toISOString(),
    issueEndsAt: coupon.issueEndsAt.toISOString(),
    validDays: coupon.validDays,
    validUntil: coupon.validUntil?.toISOString() ?? null,
    issueMode: coupon.issueMode,
    createdAt: coupon.createdAt.toISOString(),
    ...(stats === undefined ? {} : { stats }),
  }
}

export const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.authenticateAdmin)
  const security = [{ adminToken: [] }]

  app.post(
    '/admin/coupons',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create a coupon',
        security,
        body: CreateCouponBody,
        response: { 201: AdminCoupon, ...errors(400, 401, 403, 413, 415, 422, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body
      // Every rule (cross-field ones too) is checked by the insert, in the transaction that creates the row.
      const coupon = await app.issuance.createCoupon({
        name: body.name,
        discount: body.discount,
        quantity: body.quantity,
        issueStartsAt: new Date(body.issueStartsAt),
        issueEndsAt: new Date(body.issueEndsAt),
        validDays: body.validDays ?? null,
        validUntil: body.validUntil === undefined ? null : new Date(body.validUntil),
        issueMode: body.issueMode ?? 'stream',
        prequeueStartsAt: body.prequeueStartsAt === undefined ? null : new Date(body.prequeueStartsAt),
        prequeueOrder: body.prequeueOrder ?? null,
      })
      return reply.code(201).send(adminView(coupon))
    },
  )

  app.get(
    '/admin/coupons',
    {
      schema: {
        tags: ['admin'],
        summary: 'List coupons, newest first',
        security,
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
            before: Type.Optional({ ...Id, description: 'only coupons with a smaller id (paging)' }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(AdminCoupon), ...errors(400, 401, 403, 503) },
      },
    },
    async (request) => {
      const coupons = await app.issuance.list(request.query.limit ?? 100, request.query.before)
      return coupons.map((coupon) => adminView(coupon))
    },
  )

  app.get(
    '/admin/coupons/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'A coupon with live stats',
        security,
        params: IdParams,
        response: { 200: AdminCoupon, ...errors(401, 403, 404, 503) },
      },
    },
    async (request) => {
      const coupon = await app.issuance.get(request.params.id)
      return adminView(coupon, await app.issuance.stats(coupon))
    },
  )

  app.get(
    '/admin/coupons/:id/audit',
    {
      schema: {
        tags: ['admin'],
        summary: 'Reconcile Redis against Postgres for a coupon',
        security,
        params: IdParams,
        response: { 200: Audit, ...errors(401, 403, 404, 503) },
      },
    },
    async (request) => app.issuance.audit(await app.issuance.get(request.params.id)),
  )

  app.get(
    '/admin/coupons/:id/events',
    {
      config: { eventStream: true },
      schema: {
        tags: ['admin'],
        summary: 'Server-Sent Events: a `stats` event every second',
        description: 'EventSource cannot send headers: pass the admin token as `access_token`.',
        security,
        params: IdParams,
        querystring: EventStreamQuery,
        response: {
          200: {
            description: 'text/event-stream of `stats` events',
            content: { 'text/event-stream': { schema: CouponStatsSchema } },
          },
          ...errors(401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const coupon = await app.issuance.get(request.params.id)
      const stream = openEventStream(request, reply)
      let open = true
      stream.closed.then(() => {
        open = false
      })
      while (open) {
        try {
          stream.send('stats', {
            couponId: coupon.id,
            at: new Date().toISOString(),
            ...(await app.issuance.stats(coupon)),
          })
        } catch (error) {
          stream.send('error', { detail: 'stats are unavailable right now' })
          request.log.warn({ reqId: request.id, err: error }, 'stats for SSE failed')
        }
        await Promise.race([new Promise((resolve) => setTimeout(resolve, 1_000)), stream.closed])
      }
    },
  )
}
