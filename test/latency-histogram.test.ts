import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { Histogram, Registry } from 'prom-client'
import { LatencyHistogram } from '../src/monitoring/latency-histogram.ts'

const BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** prom-client's own histogram, as the app had it before: the reference for the exposition. */
function reference() {
  const registry = new Registry()
  const histogram = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: BOUNDS,
    registers: [registry],
  })
  return { registry, histogram }
}

const answer = fc.record({
  method: fc.constantFrom('GET', 'POST'),
  route: fc.constantFrom('/coupons/:id/issuance', '/coupons/:id', 'unmatched'),
  status: fc.constantFrom(200, 202, 410, 503),
  // Values on the bounds themselves too: a bound counts in its own bucket (le).
  seconds: fc.oneof(fc.constantFrom(...BOUNDS, 0, 10), fc.double({ min: 0, max: 5, noNaN: true })),
})

describe('the request latency histogram counted in plain cells', () => {
  it('prints exactly what prom-client prints for the same answers, in the text and the JSON of /metrics', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(answer, { maxLength: 60 }), async (answers) => {
        const expected = reference()
        const registry = new Registry()
        const latency = new LatencyHistogram(registry, BOUNDS)
        const cells = new Map<string, ReturnType<LatencyHistogram['cell']>>()
        for (const { method, route, status, seconds } of answers) {
          expected.histogram.labels(method, route, String(status)).observe(seconds)
          const key = `${method} ${route} ${status}`
          let cell = cells.get(key)
          if (cell === undefined) {
            cell = latency.cell(method, route, String(status))
            cells.set(key, cell)
          }
          latency.record(cell, seconds)
        }
        const lines = (text: string) => text.split('\n').sort()
        assert.deepEqual(lines(await registry.metrics()), lines(await expected.registry.metrics()))
        // The JSON (cluster aggregation) by name, labels and value: the key order may differ.
        const json = async (r: Registry) =>
          ((await r.getMetricsAsJSON())[0]?.values ?? [])
            .map((sample) => {
              const { labels, value } = sample
              const name = 'metricName' in sample ? sample.metricName : undefined
              return JSON.stringify([name, Object.entries(labels).sort(), value])
            })
            .sort()
        assert.deepEqual(await json(registry), await json(expected.registry))
      }),
      { numRuns: 200 },
    )
  })

  it('starts from zero again after reset, keeping its cells', async () => {
    const registry = new Registry()
    const latency = new LatencyHistogram(registry, BOUNDS)
    const cell = latency.cell('POST', '/coupons/:id/issuance', '410')
    latency.record(cell, 0.002)
    latency.reset()
    assert.doesNotMatch(await registry.metrics(), /_count/)
    latency.record(cell, 0.002)
    assert.match(
      await registry.metrics(),
      /http_request_duration_seconds_count\{method="POST",route="\/coupons\/:id\/issuance",status="410"\} 1/,
    )
  })
})
