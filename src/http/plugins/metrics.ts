import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, collectDefaultMetrics, Registry } from 'prom-client'
import { type LatencyCell, LatencyHistogram } from '../../monitoring/latency-histogram.ts'
import { writerBatchRows, writerLingerSeconds } from '../../monitoring/writer-metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: {
      registry: Registry
      /** Counts one issuance request's outcome (ISSUED, PENDING, ACCEPTED or the error code) for its mode. */
      countOutcome(mode: string, outcome: string): void
      /**
       * Records one answer's latency for a route (its URL pattern; 'unmatched' for answers without one): for
       * answers given outside the route's hooks (http/sold-out-door.ts).
       */
      observeLatency(route: string, method: string, status: number, seconds: number): void
    }
  }
}

/** Prometheus metrics on GET /metrics: request latency by route, issuance outcomes by mode, process stats. */
export default fp(
  async (app) => {
    // One registry per app instance, so several apps in one test process do not collide.
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    registry.registerMetric(writerBatchRows)
    registry.registerMetric(writerLingerSeconds)
    const requestDuration = new LatencyHistogram(
      registry,
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    )
    // Outcomes are counted in plain numbers and added to the counter when /metrics is read: prom-client
    // builds a string of the label values on every inc(), which cost about 0.4 µs an answer on the sold-out
    // path. Each label set's count is kept by mode then outcome, so no string is built per answer either.
    const outcomeCounts = new LabelledChildren<string, string, { counted: number; reported: number }>(() => ({
      counted: 0,
      reported: 0,
    }))
    new Counter({
      name: 'coupon_issuance_requests_total',
      help: 'Issuance requests by mode and outcome (ISSUED, PENDING, ACCEPTED or the error code)',
      labelNames: ['mode', 'outcome'] as const,
      registers: [registry],
      collect() {
        for (const [mode, outcome, count] of outcomeCounts.entries()) {
          if (count.counted === count.reported) continue
          this.inc({ mode, outcome }, count.counted - count.reported)
          count.reported = count.counted
        }
      },
    })
    const countOutcome = (mode: string, outcome: string) => {
      outcomeCounts.of(mode, outcome).counted += 1
    }
    // The latency cells by route, then method and status, each made once: nothing is looked up by string or
    // built per answer.
    const latencyByRoute = new Map<string, LabelledChildren<string, number, LatencyCell>>()
    const latencyOf = (route: string) => {
      let cells = latencyByRoute.get(route)
      if (cells === undefined) {
        cells = new LabelledChildren((method, status) => requestDuration.cell(method, route, String(status)))
        latencyByRoute.set(route, cells)
      }
      return cells
    }
    const observeLatency = (route: string, method: string, status: number, seconds: number) =>
      requestDuration.record(latencyOf(route).of(method, status), seconds)
    app.decorate('metrics', { registry, countOutcome, observeLatency })
    // One latency hook per route, made when the route is added. Answers without a route (404, a URL the
    // router refuses) go to the 'unmatched' hook.
    const latencyHook = (route: string) => {
      const cells = latencyOf(route)
      return (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
        requestDuration.record(cells.of(request.method, reply.statusCode), reply.elapsedTime / 1000)
        done()
      }
    }
    app.addHook('onRoute', (route) => {
      const hooks = route.onResponse
      const hook = latencyHook(route.url)
      route.onResponse =
        hooks === undefined ? [hook] : Array.isArray(hooks) ? [...hooks, hook] : [hooks, hook]
    })
    const unmatched = latencyHook('unmatched')
    app.addHook('onResponse', (request, reply, done) => {
      if (request.is404) unmatched(request, reply, done)
      else done()
    })
    app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
      reply.type(registry.contentType)
      return registry.metrics()
    })
  },
  { name: 'metrics' },
)

/** Values kept per pair of label values, each made once: a metric's cell, or a plain count. */
class LabelledChildren<A, B, Child> {
  private readonly children = new Map<A, Map<B, Child>>()
  private readonly make: (a: A, b: B) => Child

  constructor(make: (a: A, b: B) => Child) {
    this.make = make
  }

  /** Every child made so far, with its two label values. */
  *entries(): Generator<[A, B, Child]> {
    for (const [a, byB] of this.children) for (const [b, child] of byB) yield [a, b, child]
  }

  of(a: A, b: B): Child {
    let byB = this.children.get(a)
    if (byB === undefined) {
      byB = new Map()
      this.children.set(a, byB)
    }
    let child = byB.get(b)
    if (child === undefined) {
      child = this.make(a, b)
      byB.set(b, child)
    }
    return child
  }
}
