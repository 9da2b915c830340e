import { after, before, describe, it } from 'node:test'
import { startTestApp, type TestApp } from './support/app.ts'
import { assertSaleInvariants } from './support/invariants.ts'

/**
 * The invariants of docs/api.md over real HTTP for every mode this server enables: thousands of concurrent requests
 * for a small stock from more users than stock, some users pressing twice. (test/cluster-modes.test.ts runs
 * the same sale on a Redis Cluster, kafka included.)
 */
describe('the invariants in every mode, over HTTP', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('invariants', { QUEUE_DRAIN_CRON: '* * * * * *' })
  })
  after(() => t.close())

  for (const issueMode of ['sync', 'queue', 'stream'] as const) {
    it(`${issueMode}: issues exactly the quantity, once per user, to the first requesters, and decides every request`, async () => {
      await assertSaleInvariants(t, issueMode)
    })
  }
})
