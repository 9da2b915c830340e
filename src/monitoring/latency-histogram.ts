import { Histogram, type MetricType, type Registry } from 'prom-client'

type LatencyLabel = 'method' | 'route' | 'status'
/** The label names of the exported values: a bucket's bound (`le`) is a label of its own there. */
type ExportedLabel = LatencyLabel | 'le'
type Exported = Awaited<ReturnType<Histogram<ExportedLabel>['get']>>
type ExportedValue = Exported['values'][number] & { sharedLabels?: Partial<Record<LatencyLabel, string>> }

const NAME = 'http_request_duration_seconds'
const HELP = 'HTTP request latency by route and status'
// prom-client's typings declare MetricType a numeric enum that its JavaScript does not export; the type
// every histogram reports at run time is this string.
const HISTOGRAM_TYPE = 'histogram' as unknown as MetricType

/** One label set's counts: answers per bucket (not cumulative, the last one past every bound), sum, count. */
export interface LatencyCell {
  readonly labels: Record<LatencyLabel, string>
  readonly buckets: Float64Array
  sum: number
  count: number
}

/**
 * `http_request_duration_seconds`, counted in plain arrays: one cell per label set, which the caller makes
 * once and keeps. prom-client's own observe() builds a string of the label values on every call, so on
 * every answer. The cells are read out in prom-client's own format when /metrics is read (`get`, and
 * `getForPromString`, which the registry prefers for the text format).
 */
export class LatencyHistogram extends Histogram<ExportedLabel> {
  private readonly cells: LatencyCell[] = []
  private readonly bounds: readonly number[]

  constructor(registry: Registry, bounds: readonly number[]) {
    super({
      name: NAME,
      help: HELP,
      labelNames: ['method', 'route', 'status'],
      buckets: [...bounds],
      registers: [registry],
    })
    this.bounds = bounds
  }

  /** A new cell for this label set: make it once per label set and keep it. */
  cell(method: string, route: string, status: string): LatencyCell {
    const cell = {
      labels: { method, route, status },
      buckets: new Float64Array(this.bounds.length + 1),
      sum: 0,
      count: 0,
    }
    this.cells.push(cell)
    return cell
  }

  /** Counts one answer of `seconds` in the cell. */
  record(cell: LatencyCell, seconds: number): void {
    let bucket = 0
    while (bucket < this.bounds.length && seconds > this.bounds[bucket]!) bucket++
    cell.buckets[bucket]! += 1
    cell.sum += seconds
    cell.count += 1
  }

  async getForPromString(): Promise<Exported> {
    const name = NAME
    const values: ExportedValue[] = []
    for (const cell of this.cells) {
      if (cell.count === 0) continue
      let cumulative = 0
      this.bounds.forEach((bound, i) => {
        cumulative += cell.buckets[i]!
        values.push({
          labels: { le: bound },
          sharedLabels: cell.labels,
          value: cumulative,
          metricName: `${name}_bucket`,
        })
      })
      values.push(
        {
          labels: { le: '+Inf' },
          sharedLabels: cell.labels,
          value: cell.count,
          metricName: `${name}_bucket`,
        },
        { labels: {}, sharedLabels: cell.labels, value: cell.sum, metricName: `${name}_sum` },
        { labels: {}, sharedLabels: cell.labels, value: cell.count, metricName: `${name}_count` },
      )
    }
    return { name, help: HELP, type: HISTOGRAM_TYPE, values, aggregator: 'sum', collect: () => undefined }
  }

  override async get(): Promise<Exported> {
    const data = await this.getForPromString()
    // As prom-client's get() gives them: each value's own labels and its label set's together.
    const values = data.values.map(({ sharedLabels, ...value }: ExportedValue) => ({
      ...value,
      labels: { ...value.labels, ...sharedLabels },
    }))
    return { ...data, values }
  }

  override reset(): void {
    super.reset()
    // prom-client's constructor calls reset() too, before this class's fields exist.
    for (const cell of this.cells ?? []) {
      cell.buckets.fill(0)
      cell.sum = 0
      cell.count = 0
    }
  }
}
