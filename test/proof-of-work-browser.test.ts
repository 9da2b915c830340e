/**
 * Proof of work in a real browser: Debian's Chromium (playwright-core, as test/dashboard.test.ts) loads the
 * demo page `GET /pow-demo.html`, which fetches a challenge, solves it in Web Workers with altcha-lib's
 * solver at the default difficulty, and gets its coupon (202). `POW_SOLVE_SAMPLES=20` also measures that
 * many solves and prints their median (the figure in README "Protecting a sale"; not an assertion).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { BrowserContext, Page } from 'playwright-core'
import { startTestApp, type TestApp } from './support/app.ts'
import { type Browser, launchChromium } from './support/chromium.ts'

const SAMPLES = Number(process.env.POW_SOLVE_SAMPLES ?? 0)

interface DemoResult {
  status: number
  body: { status?: string; code?: string }
  solveMs: number
}

describe('proof of work in Chromium', () => {
  let t: TestApp
  let context: BrowserContext
  let browser: Browser | undefined
  let page: Page
  const scriptErrors: string[] = []

  before(async () => {
    t = await startTestApp('powbrowser', { ADDRESS_LIMIT_PER_WINDOW: '100000' })
    browser = await launchChromium()
    context = browser.context
    page = await context.newPage()
    page.on('pageerror', (error) => scriptErrors.push(error.message))
    await page.goto(`${t.baseUrl}/pow-demo.html`)
  })

  after(async () => {
    await browser?.close()
    await t?.close()
  })

  it('solves a challenge at the default difficulty and gets the coupon', async () => {
    const coupon = await t.createCoupon({ proofOfWork: {} })
    assert.deepEqual(coupon.proofOfWork, { maxNumber: 100_000 })
    await page.fill('#coupon', String(coupon.id))
    await page.fill('#token', t.tokenFor('browser-user'))
    await page.click('#get')
    await page.waitForSelector('#result[data-status]', { timeout: 60_000 })
    assert.equal(
      await page.getAttribute('#result', 'data-status'),
      '202',
      (await page.textContent('#result')) ?? '',
    )
    const status = await t.http('GET', `/coupons/${coupon.id}/issuance`, {
      token: t.tokenFor('browser-user'),
    })
    assert.equal(status.status, 200, 'the request is on record for that user')
    assert.deepEqual(scriptErrors, [], 'no script errors on the page')
  })

  it(`measures ${SAMPLES} solves (POW_SOLVE_SAMPLES)`, { skip: SAMPLES === 0 }, async (context) => {
    const coupon = await t.createCoupon({ proofOfWork: {}, quantity: SAMPLES })
    const times: number[] = []
    for (let i = 0; i < SAMPLES; i++) {
      const token = t.tokenFor(`sample-${i}`)
      const result = await page.evaluate(
        ([id, bearer]) =>
          (
            globalThis as unknown as { powDemo: { getCoupon(id: number, token: string): Promise<unknown> } }
          ).powDemo.getCoupon(id, bearer),
        [coupon.id, token] as [number, string],
      )
      const { status, solveMs } = result as DemoResult
      assert.equal(status, 202)
      times.push(solveMs)
    }
    times.sort((a, b) => a - b)
    const median = times[Math.floor(times.length / 2)]!
    const cores = await page.evaluate(() => navigator.hardwareConcurrency)
    context.diagnostic(
      `${SAMPLES} solves at maxNumber 100000 in Chromium (${cores} cores): median ${median.toFixed(0)} ms, ` +
        `min ${times[0]!.toFixed(0)} ms, max ${times.at(-1)!.toFixed(0)} ms`,
    )
  })
})
