import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from 'typebox'
import { Type } from 'typebox'
import type { Coupon, CouponStats } from '../../domain/coupon.ts'
import type { CouponPatch } from '../../domain/coupon-change.ts'
import { proofOfWorkSetting } from '../../domain/proof-of-work.ts'
import type { CouponChange as Change } from '../../storage/coupon-changes.ts'
import {
  AdminCoupon,
  AdminNameHeaders,
  Audit,
  CouponChange,
  CreateCouponBody,
  PatchCouponBody,
} from '../schemas/admin.ts'
import { EventStreamQuery, errors, Id, IdParams } from '../schemas/common.ts'
import { CouponStats as CouponStatsSchema } from '../schemas/coupon.ts'
import { openEventStream } from '../sse.ts'

type App = Parameters<FastifyPluginAsyncTypebox>[0]

const security = [{ adminToken: [] }]

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

/** A create body as the new coupon's fields: dates parsed, the omitted optional ones null. */
function newCouponOf(body: Static<typeof CreateCouponBody>) {
  return {
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
  }
}

/** A PATCH body as the coupon update: only the fields sent, dates parsed. */
function couponUpdateOf(body: Static<typeof PatchCouponBody>): CouponPatch {
  return {
    ...(body.name === undefined ? {} : { name: body.name }),
    ...(body.issueStartsAt === undefined ? {} : { issueStartsAt: new Date(body.issueStartsAt) }),
    ...(body.issueEndsAt === undefined ? {} : { issueEndsAt: new Date(body.issueEndsAt) }),
    ...(body.quantity === undefined ? {} : { quantity: body.quantity }),
    ...(body.paused === undefined ? {} : { paused: body.paused }),
  }
}

/** Who makes a change: the `X-Admin-Name` header, else "admin" (the admin token itself names nobody). */
function adminName(headers: { 'x-admin-name'?: string }): string {
  return headers['x-admin-name'] ?? 'admin'
}

/** The admin's routes: create and read coupons, steer a sale, its history and audit, its live stats. */
export const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.authenticateAdmin)
  createRoute(app)
  readRoutes(app)
  steeringRoutes(app)
  recordRoutes(app)
  eventsRoute(app)
}

function createRoute(app: App): void {
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
      // Every rule (cross-field ones too) is checked by the insert, in the transaction that creates the row.
      const coupon = await app.issuance.createCoupon(newCouponOf(request.body))
      return reply.code(201).send(adminView(coupon))
    },
  )
}

function readRoutes(app: App): void {
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
}

/** Changes to a sale, each recorded in its history with the admin who made it. */
function steeringRoutes(app: App): void {
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
      const update = couponUpdateOf(request.body)
      return adminView(await app.issuance.updateCoupon(request.params.id, update, adminName(request.headers)))
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
}

/** What was done to a coupon: its change history, and Redis reconciled against Postgres. */
function recordRoutes(app: App): void {
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
}

function eventsRoute(app: App): void {
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
