import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import { Gauge } from 'prom-client'
import type { Config } from '../../config/config.ts'
import { AppError } from '../../domain/errors.ts'
import { connectionCap, EventStreamBudget } from '../connection-budget.ts'
import { rawProblemResponse } from './errors.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Open event streams against SSE_MAX_PER_USER and SSE_MAX_STREAMS (sse.ts counts them in and out). */
    eventStreams: EventStreamBudget
    /** Open client connections against HTTP_MAX_CONNECTIONS. */
    connections: {
      readonly open: number
      readonly limit: number
      /** A connection answered 503 for the budget: its requests go no further. */
      isRefused(socket: Socket): boolean
    }
  }
}

/** Seconds a client refused for the connection budget is asked to wait. */
const CONNECTION_RETRY_AFTER_SECONDS = 5
/** A refused client that does not close its side is cut off after this. */
const REFUSED_LINGER_MS = 2_000
/**
 * Refused connections still waiting for their 503 to be read hold a descriptor each; past this many a burst
 * is dropped at once, unanswered (as Node's `maxConnections` would), so the descriptors kept for Redis and
 * Postgres (part of the 64 for files in connection-budget.ts) stay free.
 */
const REFUSALS_IN_FLIGHT = 32

/**
 * Counts connections as they are accepted; one past HTTP_MAX_CONNECTIONS is answered a raw 503 problem+json
 * with Retry-After and closed (Node's own `maxConnections` would drop it without a word).
 */
function countConnections(server: Server, limit: number) {
  let open = 0
  const refused = new WeakSet<Socket>()
  server.on('connection', (socket: Socket) => {
    open += 1
    socket.once('close', () => {
      open -= 1
    })
    if (open <= limit) return
    refused.add(socket)
    if (open > limit + REFUSALS_IN_FLIGHT) {
      socket.destroy()
      return
    }
    socket.end(
      rawProblemResponse(
        503,
        'UNAVAILABLE',
        'this server is at its connection limit, try again shortly',
        CONNECTION_RETRY_AFTER_SECONDS,
      ),
    )
    // Closed when the client has read the answer and closed its side, or after the linger.
    socket.once('end', () => socket.destroy())
    setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref()
  })
  return {
    get open() {
      return open
    },
    limit,
    isRefused: (socket: Socket) => refused.has(socket),
  }
}

/**
 * The connection budget and the body timeout: caps on connections and event streams, their gauges, and a
 * 408 for a request body that stops arriving, answered through Fastify so onResponse hooks (metrics, a rate
 * limiter) see it. At registration it fits the connection cap to the descriptor limit (connectionCap).
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const cap = connectionCap(config)
    if (cap < config.http.maxConnections)
      app.log.warn(
        { maxConnections: cap },
        `ulimit -n cannot hold the default HTTP_MAX_CONNECTIONS=${config.http.maxConnections}: capped at ${cap}`,
      )
    const streams = new EventStreamBudget(config.eventStreams)
    const connections = countConnections(app.server, cap)
    app.decorate('eventStreams', streams)
    app.decorate('connections', connections)

    // The request of a connection already answered 503 goes no further (no auth, no Redis).
    app.addHook('onRequest', (request, reply, done) => {
      if (connections.isRefused(request.raw.socket)) reply.hijack()
      else done()
    })

    app.addHook('preParsing', (request, reply, payload, done) => {
      // No body to wait for (an admission is a POST without one): no timer, no listeners.
      if (request.raw.complete || request.headers['content-length'] === '0') return done(null, payload)
      const timer = setTimeout(() => {
        if (request.raw.complete || reply.sent) return
        // Fastify reads the body from `payload` and answers its error; nobody reading it: just drop it.
        if (payload.listenerCount('error') === 0) request.raw.socket.destroy()
        else payload.emit('error', new AppError('REQUEST_TIMEOUT', 'the request body did not arrive in time'))
      }, config.http.requestTimeoutMs)
      const clear = () => clearTimeout(timer)
      payload.once('end', clear)
      payload.once('close', clear)
      reply.raw.once('close', clear)
      done(null, payload)
    })

    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers: [app.metrics.registry],
        collect() {
          this.set(value())
        },
      })
    gauge('coupon_http_event_streams_open', 'Event streams open in this process', () => streams.open)
    gauge('coupon_http_event_streams_limit', 'SSE_MAX_STREAMS', () => streams.limits.maxTotal)
    gauge('coupon_http_connections_open', 'Client connections open in this process', () => connections.open)
    gauge('coupon_http_connections_limit', 'HTTP_MAX_CONNECTIONS', () => connections.limit)
  },
  { name: 'connections', dependencies: ['metrics'] },
)
