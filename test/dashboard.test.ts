/**
 * The dashboard (`GET /`) in a real browser: Debian's Chromium driven by playwright-core against a real server
 * on real Redis and Postgres. `scripts/chromium.sh` (run by `npm test`) installs Chromium when it is missing.
 * The screenshot goes to `.cache/dashboard.png`; `DASHBOARD_SCREENSHOT=docs/dashboard.png` refreshes the
 * committed one.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { BrowserContext, Page } from 'playwright-core'
import { runConcurrently, startTestApp, type TestApp } from './support/app.ts'
import { type Browser, launchChromium } from './support/chromium.ts'
import { eventually } from './support/infra.ts'
import { ROOT } from './support/processes.ts'

const STAT_KEYS = ['requested', 'accepted', 'pending', 'issued', 'soldOut', 'remaining'] as const
type Stats = Record<(typeof STAT_KEYS)[number], number>

/** The six numbers as the page shows them ("1,234"), or undefined before the first stats event. */
async function pageStats(page: Page): Promise<Stats | undefined> {
  const entries = await Promise.all(
    STAT_KEYS.map(async (key) => {
      const text = (await page.locator(`#s-${key}`).textContent()) ?? ''
      return [key, /^[\d,]+$/.test(text) ? Number(text.replaceAll(',', '')) : Number.NaN] as const
    }),
  )
  if (entries.some(([, value]) => Number.isNaN(value))) return undefined
  return Object.fromEntries(entries) as Stats
}

describe('the dashboard in Chromium', () => {
  let t: TestApp
  let context: BrowserContext
  let browser: Browser | undefined

  before(async () => {
    t = await startTestApp('dashboard')
    browser = await launchChromium({
      locale: 'en-US',
      timezoneId: 'UTC',
      viewport: { width: 1100, height: 1000 },
    })
    context = browser.context
  })

  after(async () => {
    await browser?.close()
    await t?.close()
  })

  // Uncaught script errors per page: they would leave a page that looks fine but never updates.
  const scriptErrors = new Map<Page, string[]>()

  async function openPage(): Promise<Page> {
    const page = await context.newPage()
    const errors: string[] = []
    scriptErrors.set(page, errors)
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(`${t.baseUrl}/`)
    return page
  }

  async function closePage(page: Page): Promise<void> {
    await page.close()
    assert.deepEqual(scriptErrors.get(page) ?? [], [], 'no script errors on the page')
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.locator('#token').fill(token)
    await page.locator('#login-button').click()
  }

  it('says what to enter, where the admin token comes from, and which Redis durability the service runs on', async () => {
    const page = await openPage()
    const intro = (await page.locator('#signin').textContent()) ?? ''
    assert.match(intro, /admin token/)
    assert.match(intro, /ADMIN_TOKEN/)
    assert.match(intro, /npm start/)
    assert.match(intro, /generated admin token for this run/, 'quotes the startup log line')
    assert.equal(await page.locator('#pick').isVisible(), false, 'the coupon list waits for the token')
    assert.equal(await page.locator('#live').isVisible(), false)

    const ready = await t.http('GET', '/readyz')
    assert.equal(ready.status, 200)
    const reported = ready.body.redisDurability as { verdict?: string } | undefined
    const expected = reported?.verdict ?? 'unknown'
    await eventually(
      async () => (await page.locator('#durability-verdict').textContent()) === expected,
      `durability shown as ${expected}`,
      10_000,
    )
    await closePage(page)
  })

  it('shows the verdict, appendfsync and detail of a readyz redisDurability report', async () => {
    const page = await context.newPage()
    await page.route('**/readyz', (route) =>
      route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({
          status: 'ready',
          redis: 'ok',
          postgres: 'ok',
          redisDurability: {
            verdict: 'durable',
            appendonly: true,
            appendfsync: 'everysec',
            rdbSnapshots: false,
            connectedReplicas: 0,
            detail: 'A Redis crash loses at most the last second of accepted requests.',
          },
        }),
      }),
    )
    await page.goto(`${t.baseUrl}/`)
    await eventually(
      async () => (await page.locator('#durability-verdict').textContent()) === 'durable',
      'verdict shown',
      10_000,
    )
    assert.equal(await page.locator('#durability-fsync').textContent(), 'AOF appendfsync everysec')
    assert.equal(
      await page.locator('#durability-detail').textContent(),
      'A Redis crash loses at most the last second of accepted requests.',
    )
    await closePage(page)
  })

  it('refuses a wrong admin token with a message and keeps asking for it', async () => {
    const page = await openPage()
    await signIn(page, 'not-the-admin-token-at-all')
    await page.locator('#message').filter({ hasText: 'refused this token' }).waitFor()
    assert.equal(await page.locator('#pick').isVisible(), false)
    assert.equal(await page.locator('#token').isVisible(), true)
    await closePage(page)
  })

  it('works under a Content-Security-Policy that allows only its own inline script and style and its origin', async () => {
    const html = await readFile(join(ROOT, 'src/http/dashboard.html'), 'utf8')
    const inline = (tag: string) => {
      const blocks = [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map(
        (match) => match[1]!,
      )
      assert.equal(blocks.length, 1, `one inline <${tag}>`)
      return `'sha256-${createHash('sha256').update(blocks[0]!).digest('base64')}'`
    }
    const policy = [
      "default-src 'none'",
      `script-src ${inline('script')}`,
      "script-src-attr 'none'",
      `style-src ${inline('style')}`,
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; ')
    const page = await context.newPage()
    const violations: string[] = []
    page.on('console', (message) => {
      if (/Content.Security.Policy/i.test(message.text())) violations.push(message.text())
    })
    page.on('pageerror', (error) => violations.push(error.message))
    await page.route(`${t.baseUrl}/`, async (route) => {
      const response = await route.fetch()
      await route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': policy } })
    })
    const sale = await t.createCoupon({ name: 'Under CSP', quantity: 5 })
    await page.goto(`${t.baseUrl}/`)
    await eventually(
      async () =>
        violations.length > 0 || (await page.locator('#durability-verdict').textContent()) !== 'checking…',
      'the script ran or was blocked',
      10_000,
    )
    assert.deepEqual(violations, [], 'nothing blocked by the policy')
    await signIn(page, t.adminToken)
    await page.locator(`tr.coupon[data-id="${sale.id}"]`).click()
    await page.locator('#live-status').filter({ hasText: 'live, updated' }).waitFor()
    assert.equal(await page.locator('#s-remaining').textContent(), '5')
    assert.equal((await page.locator('#chart-issued line').count()) > 0, true, 'the chart is drawn')
    await page.close()
    assert.deepEqual(violations, [], 'nothing blocked by the policy')
  })

  it('pauses, resumes, adds stock to and ends a sale, and lists every change as it happens', async () => {
    const sale = await t.createCoupon({ name: 'Steered sale', quantity: 5 })
    const ask = (userId: string) =>
      t.http('POST', `/coupons/${sale.id}/issuance`, { token: t.tokenFor(userId) })
    const page = await openPage()
    await signIn(page, t.adminToken)
    await page.locator(`tr.coupon[data-id="${sale.id}"]`).click()
    await page.locator('#live-status').filter({ hasText: 'live, updated' }).waitFor()
    await page.locator('#steer-admin').fill('browser-admin')

    await page.locator('#steer-pause').click()
    await page.locator('#paused-flag').waitFor({ state: 'visible' })
    assert.equal((await ask('steered-1')).body.code, 'ISSUE_PAUSED')
    await page.locator('#steer-resume').click()
    await page.locator('#paused-flag').waitFor({ state: 'hidden' })
    assert.equal((await ask('steered-1')).status, 202)

    await page.locator('#steer-units').fill('3')
    await page.locator('#steer-add-button').click()
    await page.locator('#live-quantity').filter({ hasText: '8' }).waitFor()
    await page.locator('#s-remaining').filter({ hasText: /^7$/ }).waitFor()
    // Another admin's change, through the API, shows up too.
    await t.http('PATCH', `/admin/coupons/${sale.id}`, {
      token: t.adminToken,
      body: { name: 'Renamed by the API' },
      headers: { 'x-admin-name': 'api-admin' },
    })
    await page.locator('#steer-end').click()
    await page.locator('#history li').nth(4).waitFor()
    assert.equal((await ask('steered-2')).body.code, 'ISSUE_ENDED')
    const lines = await page.locator('#history li').allTextContents()
    assert.deepEqual(
      lines.map((line) => line.replace(/^[\d:]+ (AM |PM )?/, '').replace(/issueEndsAt: .*/, 'issueEndsAt')),
      [
        'browser-admin: paused: false → true',
        'browser-admin: paused: true → false',
        'browser-admin: quantity: 5 → 8',
        'api-admin: name: Steered sale → Renamed by the API',
        'browser-admin: issueEndsAt',
      ],
    )
    assert.equal(await page.locator('#steer-message').textContent(), '')
    await page.locator('#steer-pause').click()
    await page
      .locator('#steer-message')
      .filter({ hasText: /refused: the sale ended/ })
      .waitFor()
    await closePage(page)
  })

  it('lists the coupons, refreshes the list by itself, and follows a running sale until it matches the admin API', async () => {
    const quantity = 150
    const users = 240
    const waves = 6
    const sale = await t.createCoupon({ name: 'Browser sale', quantity, issueMode: 'stream' })
    const page = await openPage()
    await signIn(page, t.adminToken)
    await page.locator(`tr.coupon[data-id="${sale.id}"]`).waitFor()
    assert.match((await page.locator('#pick').textContent()) ?? '', /Pick a sale to watch/)
    assert.equal(
      await page.locator(`tr.coupon[data-id="${sale.id}"] .state`).textContent(),
      'issuing',
      'a running sale is marked as issuing',
    )

    // A coupon created after sign-in shows up without a reload.
    const later = await t.createCoupon({
      name: 'Tomorrow',
      issueStartsAt: new Date(Date.now() + 86_400_000).toISOString(),
      issueEndsAt: new Date(Date.now() + 90_000_000).toISOString(),
    })
    await page.locator(`tr.coupon[data-id="${later.id}"]`).waitFor({ timeout: 15_000 })
    assert.equal(await page.locator(`tr.coupon[data-id="${later.id}"] .state`).textContent(), 'scheduled')

    await page.locator(`tr.coupon[data-id="${sale.id}"]`).click()
    await page.locator('#live-status').filter({ hasText: 'live, updated' }).waitFor()
    assert.equal(await page.locator('#live-title').textContent(), `#${sale.id} Browser sale`)
    assert.deepEqual(await pageStats(page), {
      requested: 0,
      accepted: 0,
      pending: 0,
      issued: 0,
      soldOut: 0,
      remaining: quantity,
    })

    // The crowd arrives in waves a second apart (so the page sees the numbers move), some users twice.
    const seenRequested = new Set<number>()
    let driving = true
    const watcher = (async () => {
      while (driving) {
        const stats = await pageStats(page)
        if (stats !== undefined) seenRequested.add(stats.requested)
        await new Promise((done) => setTimeout(done, 150))
      }
    })()
    const expected: Stats = {
      requested: users,
      accepted: quantity,
      pending: 0,
      issued: quantity,
      soldOut: users - quantity,
      remaining: 0,
    }
    let api: Stats | undefined
    let shown: Stats | undefined
    try {
      const perWave = users / waves
      const answers: number[] = []
      for (let wave = 0; wave < waves; wave++) {
        const statuses = await runConcurrently(perWave, 16, async (index) => {
          const userId = `shopper-${wave * perWave + index}`
          return (await t.http('POST', `/coupons/${sale.id}/issuance`, { token: t.tokenFor(userId) })).status
        })
        answers.push(...statuses)
        // A repeat by a user who already holds a place: 409, not counted as requested.
        const repeat = await t.http('POST', `/coupons/${sale.id}/issuance`, {
          token: t.tokenFor(`shopper-${wave}`),
        })
        assert.equal(repeat.status, 409)
        await new Promise((done) => setTimeout(done, 1_100))
      }
      assert.equal(answers.filter((status) => status === 202).length, quantity)
      assert.equal(answers.filter((status) => status === 410).length, users - quantity)

      await eventually(
        async () => {
          api = (await t.http('GET', `/admin/coupons/${sale.id}`, { token: t.adminToken })).body
            .stats as Stats
          shown = await pageStats(page)
          return (
            JSON.stringify(api) === JSON.stringify(expected) && JSON.stringify(shown) === JSON.stringify(api)
          )
        },
        'the page shows the admin API stats of the finished sale',
        15_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: api ${JSON.stringify(api)}, page ${JSON.stringify(shown)}`)
      })
    } finally {
      driving = false
      await watcher
    }
    const intermediate = [...seenRequested].filter((value) => value > 0 && value < users)
    assert.ok(
      intermediate.length >= 2,
      `the page showed requested moving during the sale (saw ${[...seenRequested].sort((a, b) => a - b).join(', ')})`,
    )

    const rateChart = page.locator('#chart-rate')
    assert.ok(Number(await rateChart.getAttribute('data-points')) >= waves, 'one rate point per stats event')
    assert.ok(Number(await rateChart.getAttribute('data-peak')) > 0, 'the rate chart saw requests')
    assert.ok((await rateChart.locator('path').count()) === 2, 'requested/s and issued/s lines')
    assert.ok(Number(await page.locator('#chart-issued').getAttribute('data-points')) > waves)
    assert.equal(await page.locator('#bar-issued').getAttribute('style'), 'width: 100%;')

    const screenshot = resolve(ROOT, process.env.DASHBOARD_SCREENSHOT ?? '.cache/dashboard.png')
    await mkdir(dirname(screenshot), { recursive: true })
    await page.screenshot({ path: screenshot, fullPage: true })

    // A reload keeps the token (this tab only) and the watched sale (the URL's #coupon=).
    await page.reload()
    await page.locator('#live-status').filter({ hasText: 'live, updated' }).waitFor()
    assert.equal(await page.locator('#live-title').textContent(), `#${sale.id} Browser sale`)
    assert.deepEqual(await pageStats(page), expected)
    await closePage(page)
  })
})
