import fp from 'fastify-plugin'
import type { Config } from '../config/config.ts'
import { CouponStates } from '../issuance/core/coupon-state.ts'
import { registerSaleMetrics } from './sale-metrics.ts'

/** Per-sale figures in /metrics (METRICS_SALES_MAX, METRICS_SALES_ENDED_WITHIN_MS), read at scrape time. */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const service = app.issuance
    registerSaleMetrics(
      app.metrics.registry,
      {
        db: app.db,
        redis: app.redis,
        states: new CouponStates(app.issuanceContext),
        logger: app.log,
        availableModes: () => service.availableModes(),
        stats: (coupon) => service.stats(coupon),
      },
      config.saleMetrics,
    )
  },
  { name: 'sale-metrics', dependencies: ['issuance', 'metrics'] },
)
