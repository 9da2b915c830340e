/**
 * The dashboard's fair-start block in Chromium (as test/dashboard.test.ts): watching a sale with a pre-queue
 * shows how many wait in it and counts down to the start; a sale without one shows no such block.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { BrowserContext } from 'playwright-core'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { type Browser, launchChromium } from './support/chromium.ts'

describe('the dashboard shows the pre-queue and the countdown', () => {
  let t: TestApp
  let context: BrowserContext
  let browser: Browser | undefined

  before(async () => {
    t = await startTestApp('dashfair')
    browser = await launchChromium({
      locale: 'en-US',
      timezoneId: 'UTC',
    })
    context = browser.context
  })
  after(async () => {
    await browser?.close()
    await t?.close()
  })

  it('counts the pre-queued users and the time to the start', async () => {
    const startsAt = Date.now() + 3_600_000
    const sale = await t.createCoupon({
      name: 'Pre-queued sale',
      issueMode: 'stream',
      prequeueStartsAt: new Date(Date.now() - 1_000).toISOString(),
      prequeueOrder: 'shuffle',
      issueStartsAt: new Date(startsAt).toISOString(),
      issueEndsAt: new Date(startsAt + 3_600_000).toISOString(),
    })
    const plain = await t.createCoupon({ name: 'Plain sale' })
    await runConcurrently(25, 8, (i) =>
      t.http('POST', `/coupons/${sale.id}/issuance`, { token: t.tokenFor(`d${i}`) }),
    )
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(`${t.baseUrl}/#coupon=${sale.id}`)
    await page.locator('#token').fill(t.adminToken)
    await page.locator('#login-button').click()
    await page.locator(`tr.coupon[data-id="${sale.id}"]`).click()
    await page.locator('#fs-prequeue').filter({ hasText: '25' }).waitFor({ timeout: 10_000 })
    const text = (await page.locator('#fair-start').textContent()) ?? ''
    assert.match(text, /starts in 0?\d+m \d\ds|starts in 1h 00m 00s|starts in 59m/)
    assert.match(text, /shuffle order/)
    await t.http('POST', `/coupons/${sale.id}/issuance`, { token: t.tokenFor('d25') })
    await page.locator('#fs-prequeue').filter({ hasText: '26' }).waitFor({ timeout: 10_000 })

    await page.locator(`tr.coupon[data-id="${plain.id}"]`).click()
    await page.locator('#live-title').filter({ hasText: 'Plain sale' }).waitFor()
    await page.waitForTimeout(1_500)
    assert.equal(await page.locator('#fair-start').isVisible(), false, 'no pre-queue, no block')
    await page.close()
    assert.deepEqual(errors, [])
  })
})
