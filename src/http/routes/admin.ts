import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Coupon, CouponStats } from '../../domain/coupon.ts'
import { proofOfWorkSetting } from '../../domain/proof-of-work.ts'
import type { CouponChange as Change } from '../../storage/coupon-changes.ts'
import {
  AdminCoupon,
  AdminNameHeaders,
  Audit,
  CouponChange,
  CouponStats as CouponStatsSchema,
  CreateCouponBody,
  EventStreamQuery,
  errors,
  Id,
  IdParams,
  PatchCouponBody,
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
    ...(coupon.proofOfWork === null ? {} : { proofOfWork: coupon.proofOfWork }),
    minOrderAmount: coupon.minOrderAmount,
    createdAt: coupon.createdAt.toISOString(),
    paused: coupon.paused,
    ...(stats === undefined ? {} : { stats }),
  }
}

function changeView(change: Change) {
  return { ...change, at: change.at.toISOString() }
}

/** Who makes a change: the `X-Admin-Name` header, else "admin" (the admin token itself names nobody). */
function adminName(headers: { 'x-admin-name'?: string }): string {
  return headers['x-admin-name'] ?? 'admin'
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
        proofOfWork: body.proofOfWork === undefined ? null : proofOfWorkSetting(body.proofOfWork),
        minOrderAmount: body.minOrderAmount ?? null,
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

  app.patch(
    '/admin/coupons/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Steer a sale: rename, move or end its window, add stock, pause or resume',
        security,
        params: IdParams,
        headers: AdminNameHeaders,
        body: PatchCouponBody,
        response: { 200: AdminCoupon, ...errors(400, 401, 403, 404, 409, 413, 415, 422, 503) },
      },
    },
    async (request) => {
      const { body } = request
      const coupon = await app.issuance.updateCoupon(
        request.params.id,
        {
          ...(body.name === undefined ? {} : { name: body.name }),
          ...(body.issueStartsAt === undefined ? {} : { issueStartsAt: new Date(body.issueStartsAt) }),
          ...(body.issueEndsAt === undefined ? {} : { issueEndsAt: new Date(body.issueEndsAt) }),
          ...(body.quantity === undefined ? {} : { quantity: body.quantity }),
          ...(body.paused === undefined ? {} : { paused: body.paused }),
        },
        adminName(request.headers),
      )
      return adminView(coupon)
    },
  )

  app.delete(
    '/admin/coupons/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Delete a coupon nobody has requested',
        security,
        params: IdParams,
        headers: AdminNameHeaders,
        response: { 204: Type.Null(), ...errors(401, 403, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      await app.issuance.deleteCoupon(request.params.id, adminName(request.headers))
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/admin/coupons/:id/history',
    {
      schema: {
        tags: ['admin'],
        summary: 'Every change made to a coupon, oldest first, with its admin',
        security,
        params: IdParams,
        response: { 200: Type.Array(CouponChange), ...errors(401, 403, 404, 503) },
      },
    },
    async (request) => (await app.issuance.history(request.params.id)).map(changeView),
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
        summary: 'Server-Sent Events: a `stats` event every second, a `change` event per recorded change',
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
      let lastChange = 0
      while (open) {
        try {
          // The coupon as it is now (a PATCH drops the cached copy), and the changes made since the last tick.
          const current = await app.issuance.get(coupon.id)
          for (const change of await app.issuance.history(coupon.id, lastChange)) {
            stream.send('change', changeView(change))
            lastChange = change.id
          }
          stream.send('stats', {
            couponId: coupon.id,
            at: new Date().toISOString(),
            ...(await app.issuance.stats(current)),
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
