import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestApp, type TestApp } from './support/app.ts'

interface SseEvent {
  event: string
  data: Record<string, unknown>
}

/** A real HTTP client on an SSE endpoint: collects parsed events until `until` matches one. */
async function collectEvents(url: string, until: (event: SseEvent) => boolean, onOpen?: () => Promise<void>) {
  const controller = new AbortController()
  const response = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: controller.signal })
  assert.equal(response.status, 200)
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/)
  const events: SseEvent[] = []
  const decoder = new TextDecoder()
  let buffer = ''
  let opened = false
  reading: for await (const chunk of response.body!) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true })
    let boundary = buffer.indexOf('\n\n')
    while (boundary >= 0) {
      const block = buffer.slice(0, boundary)
      buffer = buffer.slice(boundary + 2)
      boundary = buffer.indexOf('\n\n')
      const event = /^event: (.+)$/m.exec(block)?.[1]
      const data = /^data: (.+)$/m.exec(block)?.[1]
      if (event === undefined || data === undefined) continue
      const parsed = { event, data: JSON.parse(data) as Record<string, unknown> }
      events.push(parsed)
      if (!opened) {
        opened = true
        await onOpen?.()
      }
      // Leaving the loop cancels the body, which closes the connection.
      if (until(parsed)) break reading
    }
  }
  controller.abort()
  return events
}

describe('server-sent events', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('sse')
  })
  after(() => t.close())

  it('pushes the decision to the user who asked, over /me/events', async () => {
    const coupon = await t.createCoupon({ quantity: 1 })
    const events = await collectEvents(
      `${t.baseUrl}/me/events?access_token=${t.tokenFor('ivy')}`,
      (event) => event.event === 'issuance',
      async () => {
        const answer = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('ivy') })
        assert.equal(answer.status, 202)
      },
    )
    const decision = events.find((event) => event.event === 'issuance')!.data
    assert.equal(decision.userId, 'ivy')
    assert.equal(decision.couponId, coupon.id)
    assert.equal(decision.status, 'ISSUED')
    assert.equal(typeof decision.userCouponId, 'number')
  })

  it('pushes a queue user the SOLD_OUT decision when the stock ran out before their turn', async () => {
    const coupon = await t.createCoupon({ quantity: 1, issueMode: 'queue' })
    assert.equal(
      (await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('kim') })).status,
      202,
    )
    const events = await collectEvents(
      `${t.baseUrl}/me/events?access_token=${t.tokenFor('lee')}`,
      (event) => event.event === 'issuance',
      async () => {
        const answer = await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('lee') })
        assert.equal(answer.status, 202)
        assert.equal(answer.body.status, 'PENDING')
      },
    )
    const decision = events.find((event) => event.event === 'issuance')!.data
    assert.equal(decision.userId, 'lee')
    assert.equal(decision.status, 'SOLD_OUT')
    assert.equal(decision.position, 2)
  })

  it('streams coupon stats to an admin at least every second', async () => {
    const coupon = await t.createCoupon({ quantity: 3 })
    await t.http('POST', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('jack') })
    const events = await collectEvents(
      `${t.baseUrl}/admin/coupons/${coupon.id}/events?access_token=${t.adminToken}`,
      (event) => event.event === 'stats' && event.data.issued === 1,
    )
    const last = events.at(-1)!.data
    assert.equal(last.accepted, 1)
    assert.equal(last.remaining, 2)
  })

  it('refuses an SSE connection without a valid token', async () => {
    const response = await fetch(`${t.baseUrl}/me/events`, { headers: { accept: 'text/event-stream' } })
    assert.equal(response.status, 401)
    const admin = await fetch(`${t.baseUrl}/admin/coupons/1/events?access_token=wrong`, {
      headers: { accept: 'text/event-stream' },
    })
    assert.equal(admin.status, 403)
  })
})
