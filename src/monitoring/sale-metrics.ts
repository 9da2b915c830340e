/**
 * Per-sale series in /metrics, read at scrape time from the issuance service (its public stats) and the
 * sale's Redis stream (redis-probes.ts): what the built-in dashboard shows, plus what the alert rules of
 * deploy/prometheus/ need. Every API process reports the same figures (they live in Redis and Postgres), so
 * the rules aggregate them with `max` across instances.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Coupon, CouponStats, IssueMode } from '../domain/coupon.ts'
import type { Logger } from '../issuance/core/context.ts'
import type { CouponStates } from '../issuance/core/coupon-state.ts'
import type { RedisClient } from '../redis/client.ts'
import { redisNowMs } from '../redis/client.ts'
import { listActiveCoupons } from '../storage/coupons.ts'
import type { Db } from '../storage/postgres.ts'
import { probeSale, type SaleProbe } from './redis-probes.ts'

/** What the sale metrics read: the issuance service's public side and the clients it runs on. */
export interface SaleSource {
  db: Db
  redis: RedisClient
  states: CouponStates
  logger: Logger
  availableModes(): IssueMode[]
  stats(coupon: Coupon): Promise<CouponStats>
}

export interface SaleMetricsOptions {
  /** Most sales reported (the newest); the rest are counted in coupon_sale_metrics_left_out. */
  maxSales: number
  /** A sale stays reported this long after its issue window closed (its backlog may still drain). */
  endedWithinMs: number
}

interface SaleSample {
  coupon: Coupon
  stats: CouponStats
  probe: SaleProbe
}

interface Snapshot {
  samples: SaleSample[]
  leftOut: number
}

type SaleGauge = [name: string, help: string, value: (sample: SaleSample) => number | undefined]

const SALE_GAUGES: SaleGauge[] = [
  ['coupon_sale_quantity', 'Units the sale offers', (s) => s.coupon.quantity],
  [
    'coupon_sale_requested',
    'Requests that reached the decision: accepted plus refused as sold out',
    (s) => s.stats.requested,
  ],
  ['coupon_sale_accepted', 'Requests admitted with a position (acknowledged 2xx)', (s) => s.stats.accepted],
  ['coupon_sale_pending', 'Admitted requests not decided yet (no Postgres row)', (s) => s.stats.pending],
  ['coupon_sale_issued', 'Coupons issued: rows in Postgres', (s) => s.stats.issued],
  ['coupon_sale_sold_out', 'Requests refused or resolved as sold out', (s) => s.stats.soldOut],
  ['coupon_sale_remaining', 'Stock not yet promised to anyone', (s) => s.stats.remaining],
  [
    'coupon_sale_dead_letters',
    'Accepted requests moved to the dead-letter stream (stream and kafka modes)',
    (s) =>
      s.coupon.issueMode === 'stream' || s.coupon.issueMode === 'kafka' ? s.probe.deadLetters : undefined,
  ],
  [
    'coupon_sale_oldest_unwritten_age_seconds',
    'Age of the oldest accepted request that is not a Postgres row yet, 0 when none (stream and kafka modes)',
    (s) =>
      s.coupon.issueMode === 'stream' || s.coupon.issueMode === 'kafka'
        ? s.probe.oldestUnwrittenSeconds
        : undefined,
  ],
  [
    'coupon_sale_oldest_unrelayed_age_seconds',
    'Age of the oldest accepted request the relay has not put on Kafka yet, 0 when none (kafka mode)',
    (s) => (s.coupon.issueMode === 'kafka' ? s.probe.oldestUnrelayedSeconds : undefined),
  ],
]

/** Registers the per-sale gauges on `registry`; each scrape reads the sales once. */
export function registerSaleMetrics(
  registry: Registry,
  source: SaleSource,
  options: SaleMetricsOptions,
): void {
  const failures = new Counter({
    name: 'coupon_sale_metrics_failures_total',
    help: 'Sales whose figures could not be read for a scrape (Redis or Postgres away); left out of it',
    registers: [registry],
  })
  // A scrape starts every gauge's collect in the same turn: they share the one read in flight, and the
  // next scrape reads afresh.
  let inFlight: Promise<Snapshot> | undefined
  const snapshot = (): Promise<Snapshot> => {
    inFlight ??= readSales(source, options, () => failures.inc()).finally(() => {
      inFlight = undefined
    })
    return inFlight
  }
  for (const [name, help, value] of SALE_GAUGES) {
    new Gauge({
      name,
      help,
      labelNames: ['coupon_id', 'mode'] as const,
      registers: [registry],
      async collect() {
        const { samples } = await snapshot()
        this.reset()
        for (const sample of samples) {
          const figure = value(sample)
          if (figure !== undefined)
            this.set({ coupon_id: String(sample.coupon.id), mode: sample.coupon.issueMode }, figure)
        }
      },
    })
  }
  new Gauge({
    name: 'coupon_sale_metrics_left_out',
    help: 'Sales open or recently ended that have no series here (beyond METRICS_SALES_MAX)',
    registers: [registry],
    async collect() {
      this.set((await snapshot()).leftOut)
    },
  })
}

/** The sales to report and their figures; a sale that cannot be read is left out (and counted). */
async function readSales(
  source: SaleSource,
  options: SaleMetricsOptions,
  onFailure: () => void,
): Promise<Snapshot> {
  if (options.maxSales === 0) return { samples: [], leftOut: 0 }
  let eligible: Coupon[]
  let nowMs: number
  try {
    ;[eligible, nowMs] = await Promise.all([
      listActiveCoupons(source.db, source.availableModes(), options.endedWithinMs),
      redisNowMs(source.redis),
    ])
  } catch (error) {
    source.logger.debug({ err: error }, 'sale metrics: listing the sales failed')
    onFailure()
    return { samples: [], leftOut: 0 }
  }
  // listActiveCoupons orders by id: the last ones are the newest sales.
  const reported = eligible.slice(-options.maxSales)
  const samples = await Promise.all(
    reported.map(async (coupon): Promise<SaleSample | undefined> => {
      try {
        const [stats, probe] = await Promise.all([
          source.stats(coupon),
          probeSale(source.redis, source.states.of(coupon.id).keys, coupon, nowMs),
        ])
        return { coupon, stats, probe }
      } catch (error) {
        source.logger.debug({ err: error, couponId: coupon.id }, 'sale metrics: reading a sale failed')
        onFailure()
        return undefined
      }
    }),
  )
  return {
    samples: samples.filter((sample) => sample !== undefined),
    leftOut: eligible.length - reported.length,
  }
}
