import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createSigner } from 'fast-jwt'
import { ISSUE_MODES } from '../src/domain/coupon.ts'
import { insertCoupon } from '../src/storage/coupons.ts'
import { startTestApp, TEST_JWT_SECRET, type TestApp } from './support/app.ts'
import { eventually } from './support/infra.ts'
import { parseRawAnswer, type RawAnswer, rawExchange, rawRequest, rowCounts } from './support/raw-http.ts'

const PROBLEM = 'application/problem+json; charset=utf-8'

function assertProblem(answer: RawAnswer, status: number, code: string, context = '') {
  assert.equal(answer.status, status, `${context} ${answer.text}`)
  assert.equal(answer.headers['content-type'], PROBLEM, context)
  assert.equal(answer.json?.code, code, context)
  assert.equal(answer.json?.status, status, context)
}

describe('strict input', () => {
  let t: TestApp
  const window = () => ({
    issueStartsAt: new Date(Date.now() - 1_000).toISOString(),
    issueEndsAt: new Date(Date.now() + 3_600_000).toISOString(),
  })
  /** A create body with `field` set to the raw JSON text `value`. */
  const createBody = (field: string, value: string) => {
    const fields: Record<string, string> = {
      name: '"Flash sale"',
      discount: '{"type":"FIXED","amount":500}',
      quantity: '10',
      issueStartsAt: JSON.stringify(window().issueStartsAt),
      issueEndsAt: JSON.stringify(window().issueEndsAt),
      validDays: '30',
      [field]: value,
    }
    return `{${Object.entries(fields)
      .map(([key, raw]) => `${JSON.stringify(key)}:${raw}`)
      .join(',')}}`
  }

  const postCoupon = (body: string) => rawRequest(t, 'POST', '/admin/coupons', { token: t.adminToken, body })

  before(async () => {
    t = await startTestApp('strict')
  })
  after(() => t.close())

  describe('numbers', () => {
    it('refuses Infinity, -Infinity and 1e309 in paths, queries and bodies, and stores nothing', async () => {
      const coupon = await t.createCoupon()
      const before = await rowCounts(t)
      for (const value of ['Infinity', '-Infinity', '1e309', 'NaN']) {
        assertProblem(await rawRequest(t, 'GET', `/coupons/${value}`), 400, 'VALIDATION_ERROR', value)
        assertProblem(
          await rawRequest(t, 'GET', `/admin/coupons?limit=${value}`, { token: t.adminToken }),
          400,
          'VALIDATION_ERROR',
          value,
        )
      }
      for (const value of ['"Infinity"', '"-Infinity"', '1e309', '-1e309']) {
        for (const field of ['quantity', 'validDays']) {
          assertProblem(
            await postCoupon(createBody(field, value)),
            400,
            'VALIDATION_ERROR',
            `${field}: ${value}`,
          )
        }
        assertProblem(
          await postCoupon(createBody('discount', `{"type":"FIXED","amount":${value}}`)),
          400,
          'VALIDATION_ERROR',
          `amount: ${value}`,
        )
        assertProblem(
          await rawRequest(t, 'POST', '/me/coupons/1/redeem', {
            token: t.tokenFor('nina'),
            body: `{"orderId":"o-1","orderAmount":${value}}`,
          }),
          400,
          'VALIDATION_ERROR',
          `orderAmount: ${value}`,
        )
      }
      assert.deepEqual(await rowCounts(t), before)
      assert.equal((await rawRequest(t, 'GET', `/coupons/${coupon.id}`)).status, 200)
    })

    it('leaves no row and a working admin list after a create with amount "-Infinity"', async () => {
      const before = await rowCounts(t)
      const answer = await postCoupon(createBody('discount', '{"type":"FIXED","amount":"-Infinity"}'))
      assertProblem(answer, 400, 'VALIDATION_ERROR')
      assert.equal((await rowCounts(t)).coupons, before.coupons)
      const list = await rawRequest(t, 'GET', '/admin/coupons', { token: t.adminToken })
      assert.equal(list.status, 200)
      assert.ok(Array.isArray(list.json))
    })

    it('does not coerce "10", [10] or true into an order amount, and the coupon stays unredeemed', async () => {
      const coupon = await t.createCoupon({ quantity: 1, issueMode: 'sync' })
      const issued = await rawRequest(t, 'POST', `/coupons/${coupon.id}/issuance`, {
        token: t.tokenFor('otto'),
      })
      assert.equal(issued.status, 201)
      const userCouponId = Number(issued.json?.userCouponId)
      for (const value of ['"10"', '[10]', 'true', 'false', 'null', '10.5', '{}', '"1e3"']) {
        assertProblem(
          await rawRequest(t, 'POST', `/me/coupons/${userCouponId}/redeem`, {
            token: t.tokenFor('otto'),
            body: `{"orderId":"o-1","orderAmount":${value}}`,
          }),
          400,
          'VALIDATION_ERROR',
          value,
        )
      }
      const mine = await rawRequest(t, 'GET', '/me/coupons', { token: t.tokenFor('otto') })
      assert.equal((mine.json as unknown as { status: string }[])[0]?.status, 'AVAILABLE')
      const redeemed = await rawRequest(t, 'POST', `/me/coupons/${userCouponId}/redeem`, {
        token: t.tokenFor('otto'),
        body: '{"orderId":"o-1","orderAmount":1000}',
      })
      assert.equal(redeemed.status, 200)
      assert.equal(redeemed.json?.discountAmount, 1000, 'FIXED 5000 off an order of 1000')
    })

    it('does not coerce strings, arrays or booleans into coupon fields', async () => {
      const before = await rowCounts(t)
      for (const [field, value] of [
        ['quantity', '"10"'],
        ['quantity', '[10]'],
        ['quantity', 'true'],
        ['validDays', '"30"'],
        ['name', '42'],
        ['name', '["Flash"]'],
        ['discount', '{"type":"FIXED","amount":"500"}'],
        ['discount', '{"type":"RATE","percent":true}'],
      ] as const) {
        assertProblem(
          await postCoupon(createBody(field, value)),
          400,
          'VALIDATION_ERROR',
          `${field}: ${value}`,
        )
      }
      assert.deepEqual(await rowCounts(t), before)
    })

    it('takes ids in paths and queries only as canonical decimal integers within range', async () => {
      const coupon = await t.createCoupon()
      const refused = [
        '0x10',
        '+1',
        '01',
        '1.0',
        '1e1',
        '[10]',
        'true',
        '%201',
        '1%20',
        '-1',
        '0',
        '9007199254740992',
      ]
      for (const id of refused) {
        const answer = await rawRequest(t, 'GET', `/coupons/${id}`)
        assertProblem(answer, 400, 'VALIDATION_ERROR', id)
        assertProblem(
          await rawRequest(t, 'GET', `/admin/coupons?before=${id}`, { token: t.adminToken }),
          400,
          'VALIDATION_ERROR',
          `before=${id}`,
        )
      }
      assert.match(String((await rawRequest(t, 'GET', '/coupons/01')).json?.detail), /decimal integer/)
      assert.equal((await rawRequest(t, 'GET', `/coupons/${coupon.id}`)).status, 200)
      assertProblem(await rawRequest(t, 'GET', '/coupons/9007199254740991'), 404, 'COUPON_NOT_FOUND')
      const page = await rawRequest(t, 'GET', `/admin/coupons?limit=1&before=${coupon.id + 1}`, {
        token: t.adminToken,
      })
      assert.equal(page.status, 200)
      assert.deepEqual(
        (page.json as unknown as { id: number }[]).map((c) => c.id),
        [coupon.id],
      )
      assertProblem(
        await rawRequest(t, 'GET', '/admin/coupons?limit=1&limit=2', { token: t.adminToken }),
        400,
        'VALIDATION_ERROR',
        'repeated limit',
      )
    })
  })

  describe('strings and coupon rules', () => {
    it('refuses a NUL in a coupon name with 400, storing nothing', async () => {
      const before = await rowCounts(t)
      const answer = await postCoupon(createBody('name', '"Flash\\u0000sale"'))
      assertProblem(answer, 400, 'VALIDATION_ERROR')
      assert.match(String(answer.json?.detail), /NUL/)
      assert.deepEqual(await rowCounts(t), before)
    })

    it('refuses validUntil before or at issueEndsAt, and takes it after', async () => {
      const { issueStartsAt, issueEndsAt } = window()
      for (const validUntil of [issueStartsAt, issueEndsAt]) {
        const answer = await rawRequest(t, 'POST', '/admin/coupons', {
          token: t.adminToken,
          body: JSON.stringify({
            name: 'Expired on arrival',
            discount: { type: 'FIXED', amount: 100 },
            quantity: 1,
            issueStartsAt,
            issueEndsAt,
            validUntil,
          }),
        })
        assertProblem(answer, 400, 'VALIDATION_ERROR', validUntil)
        assert.equal(answer.json?.detail, 'validUntil must be after issueEndsAt')
      }
      const later = new Date(Date.parse(issueEndsAt) + 1_000).toISOString()
      const created = await t.createCoupon({
        issueStartsAt,
        issueEndsAt,
        validDays: undefined,
        validUntil: later,
      })
      assert.equal(created.validUntil, later)
    })

    it('names the allowed discount types when the type is wrong, and the real problem when it is right', async () => {
      const detail = async (discount: string) =>
        String((await postCoupon(createBody('discount', discount))).json?.detail)
      for (const discount of [
        '{"type":"PERCENT","percent":10}',
        '{"type":"fixed","amount":10}',
        '{"amount":10}',
      ]) {
        assert.equal(await detail(discount), 'body/discount/type must be one of "FIXED", "RATE"', discount)
      }
      assert.equal(await detail('{"type":"FIXED"}'), "body/discount must have required property 'amount'")
      assert.equal(await detail('{"type":"RATE","percent":101}'), 'body/discount/percent must be <= 100')
      assert.equal(
        await detail('{"type":"FIXED","amount":5,"percent":3}'),
        "body/discount must not have the property 'percent'",
      )
      assert.equal(await detail('"FIXED"'), 'body/discount must be an object')
    })

    it('checks every rule in the insert itself, and a create whose set-up fails leaves no row', async () => {
      const before = await rowCounts(t)
      const base = {
        name: 'Direct',
        discount: { type: 'FIXED' as const, amount: 100 },
        quantity: 5,
        issueStartsAt: new Date(),
        issueEndsAt: new Date(Date.now() + 60_000),
        validDays: null,
        validUntil: new Date(Date.now() + 30_000),
        issueMode: 'stream' as const,
      }
      await assert.rejects(insertCoupon(t.env.db, base), { code: 'VALIDATION_ERROR' })
      await assert.rejects(
        insertCoupon(t.env.db, {
          ...base,
          validUntil: null,
          validDays: 1,
          discount: { type: 'FIXED', amount: Number.NEGATIVE_INFINITY },
        }),
        { code: 'VALIDATION_ERROR' },
      )
      await assert.rejects(
        insertCoupon(t.env.db, {
          ...base,
          validUntil: null,
          validDays: 1,
          issueStartsAt: new Date(Number.NaN),
        }),
        { code: 'VALIDATION_ERROR' },
      )
      await assert.rejects(
        insertCoupon(t.env.db, { ...base, validUntil: null, validDays: 1 }, async () => {
          throw new Error('Redis set-up failed')
        }),
        /Redis set-up failed/,
      )
      assert.deepEqual(await rowCounts(t), before)
    })

    it('lists the same issue modes as the SQL CHECK on coupons.issue_mode', async () => {
      const { rows } = await t.env.db.query<{ definition: string }>(
        `SELECT pg_get_constraintdef(c.oid) AS definition FROM pg_constraint c
         JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
         WHERE n.nspname = $1 AND r.relname = 'coupons' AND c.contype = 'c'
           AND pg_get_constraintdef(c.oid) LIKE '%issue_mode%'`,
        [t.env.schema],
      )
      assert.equal(rows.length, 1)
      const inSql = [...rows[0]!.definition.matchAll(/'([a-z]+)'::text/g)].map((match) => match[1])
      assert.deepEqual([...inSql].sort(), [...ISSUE_MODES].sort())
    })
  })

  describe('tokens', () => {
    it('takes ?access_token= on the two SSE routes only', async () => {
      const coupon = await t.createCoupon()
      const sse = { accept: 'text/event-stream' }
      const refused: [string, string, string][] = [
        ['POST', '/admin/coupons', t.adminToken],
        ['GET', '/admin/coupons', t.adminToken],
        ['GET', `/admin/coupons/${coupon.id}`, t.adminToken],
        ['GET', `/admin/coupons/${coupon.id}/audit`, t.adminToken],
        ['GET', '/me/coupons', t.tokenFor('pia')],
        ['POST', `/coupons/${coupon.id}/issuance`, t.tokenFor('pia')],
        ['GET', `/coupons/${coupon.id}/issuance`, t.tokenFor('pia')],
      ]
      for (const [method, path, token] of refused) {
        const answer = await rawRequest(t, method, `${path}?access_token=${encodeURIComponent(token)}`, {
          headers: sse,
          ...(method === 'POST' ? { body: createBody('name', '"Via query"') } : {}),
        })
        assertProblem(answer, 401, 'UNAUTHENTICATED', `${method} ${path}`)
      }
      assert.equal(
        (await rawRequest(t, 'GET', `/coupons/${coupon.id}/issuance`, { token: t.tokenFor('pia') })).status,
        404,
      )
      for (const path of [`/me/events`, `/admin/coupons/${coupon.id}/events`]) {
        const token = path.startsWith('/me') ? t.tokenFor('pia') : t.adminToken
        const controller = new AbortController()
        const response = await fetch(`${t.baseUrl}${path}?access_token=${encodeURIComponent(token)}`, {
          headers: sse,
          signal: controller.signal,
        })
        assert.equal(response.status, 200, path)
        assert.equal(response.headers.get('cache-control'), 'no-store, no-transform')
        assert.equal(response.headers.get('x-content-type-options'), 'nosniff')
        controller.abort()
      }
    })

    it('refuses a JWT without exp and takes one with it', async () => {
      const forever = createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256' })({ sub: 'quinn' })
      const answer = await rawRequest(t, 'GET', '/me/coupons', { token: forever })
      assertProblem(answer, 401, 'UNAUTHENTICATED')
      assert.equal(answer.json?.detail, 'the token must carry an expiry (exp)')
      assert.equal((await rawRequest(t, 'GET', '/me/coupons', { token: t.tokenFor('quinn') })).status, 200)
    })

    it('answers 401 with WWW-Authenticate, saying invalid_token when a token was sent', async () => {
      const none = await rawRequest(t, 'GET', '/me/coupons')
      assertProblem(none, 401, 'UNAUTHENTICATED')
      assert.equal(none.headers['www-authenticate'], 'Bearer realm="coupon-rush"')
      const bad = await rawRequest(t, 'GET', '/admin/coupons', { token: 'not-a-jwt' })
      assert.equal(bad.status, 403, 'a wrong admin token is forbidden, not unauthenticated')
      const badUser = await rawRequest(t, 'POST', '/coupons/1/issuance', { token: 'not-a-jwt' })
      assertProblem(badUser, 401, 'UNAUTHENTICATED')
      assert.equal(badUser.headers['www-authenticate'], 'Bearer realm="coupon-rush", error="invalid_token"')
      assert.equal(bad.headers['www-authenticate'], undefined)
      const badQuery = await rawRequest(t, 'GET', '/me/events?access_token=wrong', {
        headers: { accept: 'text/event-stream' },
      })
      assertProblem(badQuery, 401, 'UNAUTHENTICATED')
      assert.equal(badQuery.headers['www-authenticate'], 'Bearer realm="coupon-rush", error="invalid_token"')
    })
  })

  describe('errors at the HTTP level', () => {
    it('answers 413 PAYLOAD_TOO_LARGE and 415 UNSUPPORTED_MEDIA_TYPE as problem+json', async () => {
      const before = await rowCounts(t)
      assertProblem(
        await rawRequest(t, 'POST', '/admin/coupons', {
          token: t.adminToken,
          body: createBody('name', JSON.stringify('x'.repeat(20_000))),
        }),
        413,
        'PAYLOAD_TOO_LARGE',
      )
      for (const type of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
      ]) {
        assertProblem(
          await rawRequest(t, 'POST', '/admin/coupons', {
            token: t.adminToken,
            body: createBody('name', '"Wrong type"'),
            headers: { 'content-type': type },
          }),
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          type,
        )
      }
      assert.deepEqual(await rowCounts(t), before)
    })

    it('answers malformed requests (400), too large headers (431) and slow ones (408) as problem+json', async () => {
      const malformed = parseRawAnswer(await rawExchange(t.baseUrl, 'BREW /coffee HTCPCP/1.0\r\n\r\n'))
      assert.equal(malformed.status, 400)
      assert.equal(malformed.headers['content-type'], PROBLEM)
      assert.equal(malformed.json.code, 'VALIDATION_ERROR')

      const huge = parseRawAnswer(
        await rawExchange(
          t.baseUrl,
          `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
        ),
      )
      assert.equal(huge.status, 431)
      assert.equal(huge.headers['content-type'], PROBLEM)
      assert.equal(huge.json.code, 'HEADERS_TOO_LARGE')

      // Node gives up on a slow request only after its checking interval (30 s): the same error is raised on
      // a real connection of the server instead.
      const url = new URL(t.baseUrl)
      const serverSide = new Promise<Socket>((resolve) => t.app.server.once('connection', resolve))
      const client = connect(Number(url.port), url.hostname)
      let received = ''
      client.setEncoding('utf8')
      client.on('data', (chunk: string) => {
        received += chunk
      })
      const closed = new Promise((resolve) => client.on('close', resolve))
      client.on('error', () => {})
      client.write('GET /healthz HTTP/1.1\r\nHost: x\r\n')
      const socket = await serverSide
      t.app.server.emit(
        'clientError',
        Object.assign(new Error('timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }),
        socket,
      )
      await closed
      const slow = parseRawAnswer(received)
      assert.equal(slow.status, 408)
      assert.equal(slow.json.code, 'REQUEST_TIMEOUT')
    })
  })

  describe('headers', () => {
    it('sends nosniff, no framing and a CSP that allows exactly the dashboard’s inline script', async () => {
      const page = await readFile(new URL('../src/http/dashboard.html', import.meta.url), 'utf8')
      const dashboard = await rawRequest(t, 'GET', '/')
      assert.equal(dashboard.status, 200)
      const csp = String(dashboard.headers['content-security-policy'])
      assert.match(csp, /frame-ancestors 'none'/)
      assert.match(csp, /default-src 'self'/)
      assert.match(csp, /connect-src 'self'/)
      const scripts = [...page.matchAll(/<script(?![^>]*\bsrc\s*=)[^>]*>([\s\S]*?)<\/script>/gi)].map(
        (match) => match[1]!,
      )
      assert.ok(scripts.length > 0)
      for (const script of scripts) {
        const hash = createHash('sha256').update(script).digest('base64')
        assert.ok(csp.includes(`'sha256-${hash}'`), 'the inline script is allowed')
      }
      assert.doesNotMatch(csp, /script-src[^;]*'unsafe-inline'/)
      assert.doesNotMatch(page, /\son[a-z]+\s*=/i, 'no inline event handlers: the CSP blocks them')
      assert.equal(dashboard.headers['x-content-type-options'], 'nosniff')
      assert.equal(dashboard.headers['x-frame-options'], 'DENY')

      const coupon = await rawRequest(t, 'GET', '/coupons/999999')
      assert.equal(coupon.headers['x-content-type-options'], 'nosniff')
      assert.ok(String(coupon.headers['content-security-policy']).includes("frame-ancestors 'none'"))
    })

    it('marks answers to /me and other authenticated requests Cache-Control: no-store, refusals included', async () => {
      for (const [path, token] of [
        ['/me/coupons', t.tokenFor('rita')],
        ['/me/coupons', undefined],
        ['/admin/coupons', t.adminToken],
        ['/coupons/1/issuance', t.tokenFor('rita')],
      ] as const) {
        const answer = await rawRequest(t, 'GET', path, token === undefined ? {} : { token })
        assert.equal(answer.headers['cache-control'], 'no-store', `${path} ${answer.status}`)
      }
      const redeem = await rawRequest(t, 'POST', '/me/coupons/999999/redeem', {
        token: t.tokenFor('rita'),
        body: '{"orderId":"o-1","orderAmount":100}',
      })
      assert.equal(redeem.status, 404)
      assert.equal(redeem.headers['cache-control'], 'no-store')
    })
  })

  it('keeps the admin list, coupon pages and /me working after every refusal above', async () => {
    const list = await rawRequest(t, 'GET', '/admin/coupons?limit=500', { token: t.adminToken })
    assert.equal(list.status, 200)
    for (const coupon of list.json as unknown as { id: number }[]) {
      assert.equal((await rawRequest(t, 'GET', `/coupons/${coupon.id}`)).status, 200)
    }
    await eventually(
      async () => (await rawRequest(t, 'GET', '/me/coupons', { token: t.tokenFor('otto') })).status === 200,
      '/me/coupons answers',
    )
  })
})
