import fp from 'fastify-plugin'
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client'
import { writerBatchRows, writerLingerSeconds } from '../../monitoring/writer-metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: {
      registry: Registry
      /** Counts one issuance request's outcome (ISSUED, PENDING, ACCEPTED or the error code) for its mode. */
      countOutcome(mode: string, outcome: string): void
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
    const requestDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    })
    const issuanceOutcomes = new Counter({
      name: 'coupon_issuance_requests_total',
      help: 'Issuance requests by mode and outcome (ISSUED, PENDING, ACCEPTED or the error code)',
      labelNames: ['mode', 'outcome'] as const,
      registers: [registry],
    })
    // One labelled child per label set, kept: resolving labels on every request cost as much as a third
    // of an admission.
    const outcomeChildren = new Map<string, Counter.Internal>()
    const countOutcome = (mode: string, outcome: string) => {
      const key = `${mode} ${outcome}`
      let child = outcomeChildren.get(key)
      if (child === undefined) {
        child = issuanceOutcomes.labels(mode, outcome)
        outcomeChildren.set(key, child)
      }
      child.inc()
    }
    app.decorate('metrics', { registry, countOutcome })
    const children = new Map<string, { observe(seconds: number): void }>()
    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url ?? 'unmatched'
      const key = `${request.method} ${route} ${reply.statusCode}`
      let child = children.get(key)
      if (child === undefined) {
        child = requestDuration.labels(request.method, route, String(reply.statusCode))
        children.set(key, child)
      }
      child.observe(reply.elapsedTime / 1000)
      done()
    })
    app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
      reply.type(registry.contentType)
      return registry.metrics()
    })
  },
  { name: 'metrics' },
)
