import fp from 'fastify-plugin'
import type { Config } from '../../config/config.ts'
import { OrderLogs } from '../../issuance/fairness/order-log.ts'
import { ReceiptSigner } from '../../issuance/fairness/receipts.ts'
import { Waits } from '../../issuance/fairness/waits.ts'
import { fairnessRoutes } from '../routes/fairness.ts'

declare module 'fastify' {
  interface FastifyInstance {
    receipts: ReceiptSigner
    orderLogs: OrderLogs
    waits: Waits
  }
}

/**
 * Fair start (issue 19): the receipt signer (RECEIPT_SIGNING_KEY, or a key made for this run and said so),
 * the public order logs and the waits a status read tells.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const signer = new ReceiptSigner(config.receiptSigningKey)
    if (signer.generated) {
      app.log.warn(
        'RECEIPT_SIGNING_KEY is not set: receipts are signed with a key made for this run (published at /.well-known/coupon-rush-receipt-key)',
      )
    }
    app.decorate('receipts', signer)
    app.decorate('orderLogs', new OrderLogs(app.issuanceContext))
    app.decorate('waits', new Waits(app.issuanceContext))
    await app.register(fairnessRoutes)
  },
  { name: 'fairness' },
)
