/**
 * The connection budget (issue 17, items 1, 2 and 5): caps on event streams and connections, heartbeats
 * and max age, the body timeout, and the answers Node writes before Fastify sees a request.
 */
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { freePort } from '../bench/lib/infra.ts'
import { signUserToken } from '../src/auth/tokens.ts'
import {
  runConcurrently,
  startTestApp,
  TEST_ADMIN_TOKEN,
  TEST_JWT_SECRET,
  type TestApp,
} from './support/app.ts'
import { createTestEnv, type TestEnv } from './support/infra.ts'
import { type Child, spawnNode } from './support/processes.ts'
import { parseRawAnswer, rawExchange } from './support/raw-http.ts'

const PROBLEM = 'application/problem+json; charset=utf-8'

/** An event stream read on a raw socket: what arrived so far, and whether the server ended it. */
interface RawStream {
  socket: Socket
  received(): string
  /** Resolves with everything received once the connection closes. */
  ended: Promise<string>
  /** Resolves once the status line and the first bytes of the body are in. */
  opened: Promise<string>
}

function openRawStream(baseUrl: string, path: string): RawStream {
  const url = new URL(baseUrl)
  const socket = connect(Number(url.port), url.hostname)
  socket.setEncoding('utf8')
  let received = ''
  let onOpen: (text: string) => void = () => {}
  const opened = new Promise<string>((resolve) => {
    onOpen = resolve
  })
  socket.on('data', (chunk: string) => {
    received += chunk
    if (received.includes('\r\n\r\n')) onOpen(received)
  })
  // A reset after the server answered counts as the end of the stream.
  socket.on('error', () => {})
  socket.on('end', () => socket.end())
  const ended = new Promise<string>((resolve) =>
    socket.on('close', () => {
      onOpen(received)
      resolve(received)
    }),
  )
  socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n`)
  return { socket, received: () => received, ended, opened }
}

/** The body of a raw chunked answer, its chunks joined. */
function bodyOf(text: string): string {
  let rest = text.slice(text.indexOf('\r\n\r\n') + 4)
  let body = ''
  while (rest.length > 0) {
    const lineEnd = rest.indexOf('\r\n')
    const size = Number.parseInt(rest.slice(0, lineEnd), 16)
    if (!(size > 0)) break
    body += rest.slice(lineEnd + 2, lineEnd + 2 + size)
    rest = rest.slice(lineEnd + 2 + size + 2)
  }
  return body
}

function statusOf(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1])
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

describe('event stream caps', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('ssecaps', { SSE_MAX_PER_USER: '2', SSE_MAX_STREAMS: '6' })
  })
  after(() => t.close())

  it('keeps at most SSE_MAX_PER_USER streams of one user open when they open 100 times as many', async () => {
    const token = t.tokenFor('greedy')
    const streams: RawStream[] = []
    for (let i = 0; i < 200; i++) {
      const stream = openRawStream(t.baseUrl, `/me/events?access_token=${token}`)
      assert.equal(statusOf(await stream.opened), 200)
      streams.push(stream)
      assert.ok(t.app.eventStreams.open <= 2, `at most 2 open after ${i + 1}`)
    }
    await Promise.all(streams.slice(0, -2).map((stream) => stream.ended))
    const stillOpen = streams.filter((stream) => !stream.socket.destroyed)
    assert.deepEqual(stillOpen, streams.slice(-2), 'the two newest stay open')
    // Each older one was told why it ended, and asked to come back only after a minute.
    for (const stream of streams.slice(0, -2)) {
      assert.match(
        bodyOf(stream.received()),
        /retry: 60000\nevent: closed\ndata: \{"reason":"superseded"\}\n\n$/,
      )
    }
    for (const stream of stillOpen) stream.socket.destroy()
    await eventually(() => t.app.eventStreams.open === 0, 'the streams counted out')
  })

  it('refuses a stream past SSE_MAX_STREAMS with 503 and Retry-After, and shows the budget', async () => {
    const held = ['u1', 'u2', 'u3'].flatMap((user) =>
      [0, 1].map(() => openRawStream(t.baseUrl, `/me/events?access_token=${t.tokenFor(user)}`)),
    )
    for (const stream of held) assert.equal(statusOf(await stream.opened), 200)
    const refused = parseRawAnswer(
      await rawExchange(
        t.baseUrl,
        `GET /me/events?access_token=${t.tokenFor('u4')} HTTP/1.1\r\nHost: x\r\n\r\n`,
      ),
    )
    assert.equal(refused.status, 503)
    assert.equal(refused.headers['content-type'], PROBLEM)
    assert.equal(refused.headers['retry-after'], '5')
    assert.equal(refused.json.code, 'UNAVAILABLE')

    const ready = await t.http('GET', '/readyz')
    assert.equal(ready.status, 200)
    assert.deepEqual(ready.body.eventStreams, { open: 6, limit: 6 })
    assert.equal((ready.body.connections as { limit: number }).limit, 10_000)
    const metrics = await request(`${t.baseUrl}/metrics`).then((response) => response.body.text())
    assert.match(metrics, /^coupon_http_event_streams_open 6$/m)
    assert.match(metrics, /^coupon_http_event_streams_limit 6$/m)
    assert.match(metrics, /^coupon_http_connections_open \d+$/m)
    assert.match(metrics, /^coupon_http_connections_limit 10000$/m)
    for (const stream of held) stream.socket.destroy()
    await eventually(() => t.app.eventStreams.open === 0, 'the streams counted out')
  })
})

describe('heartbeats, max age and timeouts', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('ssetime', {
      SSE_HEARTBEAT_MS: '200',
      SSE_MAX_AGE_MS: '1500',
      HTTP_REQUEST_TIMEOUT_MS: '500',
      HTTP_HEADERS_TIMEOUT_MS: '500',
    })
  })
  after(() => t.close())

  it('sends heartbeats, then closes the stream at its max age (not at the request timeout)', async () => {
    const started = Date.now()
    const stream = openRawStream(t.baseUrl, `/me/events?access_token=${t.tokenFor('idle')}`)
    const text = await stream.ended
    const lived = Date.now() - started
    assert.equal(statusOf(text), 200)
    assert.ok(lived >= 1_400 && lived < 4_000, `closed after ${lived} ms`)
    const body = bodyOf(text)
    assert.ok((body.match(/^: keep-alive$/gm) ?? []).length >= 4, 'a heartbeat every 200 ms')
    assert.match(body, /event: closed\ndata: \{"reason":"max-age"\}\n\n$/)
    assert.match(body, /retry: 2000\n/)
    await eventually(() => t.app.eventStreams.open === 0, 'the stream counted out')
  })

  it('answers 408 problem+json when a body stops arriving, through Fastify (counted by onResponse)', async () => {
    const coupon = await t.createCoupon()
    const started = Date.now()
    const received = await rawExchange(
      t.baseUrl,
      `POST /coupons/${coupon.id}/issuance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.tokenFor('slow')}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":',
      { stall: true },
    )
    const elapsed = Date.now() - started
    assert.ok(elapsed >= 450 && elapsed < 2_500, `answered after ${elapsed} ms`)
    const answer = parseRawAnswer(received)
    assert.equal(answer.status, 408)
    assert.equal(answer.headers['content-type'], PROBLEM)
    assert.equal(answer.json.code, 'REQUEST_TIMEOUT')
    const metrics = await request(`${t.baseUrl}/metrics`).then((response) => response.body.text())
    assert.match(
      metrics,
      /http_request_duration_seconds_count\{method="POST",route="\/coupons\/:id\/issuance",status="408"\} 1/,
    )
  })

  it('answers 408 when the headers stop arriving', async () => {
    const received = await rawExchange(t.baseUrl, 'GET /healthz HTTP/1.1\r\nHost: x\r\n', { stall: true })
    const answer = parseRawAnswer(received)
    assert.equal(answer.status, 408)
    assert.equal(answer.json.code, 'REQUEST_TIMEOUT')
  })
})

describe('what Node would answer itself', () => {
  let t: TestApp
  before(async () => {
    t = await startTestApp('nodeerr', { HTTP_MAX_CONNECTIONS: '8' })
  })
  after(() => t.close())

  it('answers a missing Host, an unknown Expect and a malformed request line as problem+json', async () => {
    const noHost = parseRawAnswer(await rawExchange(t.baseUrl, 'GET /healthz HTTP/1.1\r\n\r\n'))
    assert.equal(noHost.status, 400)
    assert.equal(noHost.headers['content-type'], PROBLEM)
    assert.equal(noHost.json.code, 'VALIDATION_ERROR')
    assert.match(noHost.json.detail, /Host/)
    // HTTP/1.0 has no Host requirement.
    assert.equal(parseRawAnswer(await rawExchange(t.baseUrl, 'GET /healthz HTTP/1.0\r\n\r\n')).status, 200)

    const expect = parseRawAnswer(
      await rawExchange(t.baseUrl, 'GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n'),
    )
    assert.equal(expect.status, 417)
    assert.equal(expect.headers['content-type'], PROBLEM)
    assert.equal(expect.json.code, 'EXPECTATION_FAILED')

    const malformed = parseRawAnswer(await rawExchange(t.baseUrl, 'GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n'))
    assert.equal(malformed.status, 400)
    assert.equal(malformed.headers['content-type'], PROBLEM)
    assert.equal(malformed.json.code, 'VALIDATION_ERROR')
  })

  it('answers a connection past HTTP_MAX_CONNECTIONS with 503 and Retry-After, then serves again', async () => {
    const url = new URL(t.baseUrl)
    const idle: Socket[] = []
    await eventually(() => t.app.connections.open === 0, 'earlier connections gone')
    for (let i = 0; i < 8; i++) {
      const socket = connect(Number(url.port), url.hostname)
      socket.on('error', () => {})
      idle.push(socket)
    }
    await eventually(() => t.app.connections.open === 8, 'eight connections counted')
    const refused = parseRawAnswer(await rawExchange(t.baseUrl, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))
    assert.equal(refused.status, 503)
    assert.equal(refused.headers['content-type'], PROBLEM)
    assert.equal(refused.headers['retry-after'], '5')
    assert.equal(refused.json.code, 'UNAVAILABLE')
    for (const socket of idle) socket.destroy()
    await eventually(() => t.app.connections.open === 0, 'the idle connections gone')
    const served = parseRawAnswer(await rawExchange(t.baseUrl, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))
    assert.equal(served.status, 200)
  })
})

describe('a server process under ulimit -n 1024', () => {
  let env: TestEnv
  let common: Record<string, string>
  let server: Child
  let baseUrl: string
  const token = (userId: string) => signUserToken(TEST_JWT_SECRET, userId)

  before(async () => {
    env = await createTestEnv('ulimit')
    common = {
      ...env.childEnv,
      JWT_SECRET: TEST_JWT_SECRET,
      ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      RATE_LIMIT_PER_USER: '1000',
    }
    const port = await freePort()
    baseUrl = `http://127.0.0.1:${port}`
    server = spawnNode(
      'bin/coupon-rush.mjs',
      { ...common, PORT: String(port), HTTP_MAX_CONNECTIONS: '900', LOG_LEVEL: 'info' },
      ['serve'],
      { openFiles: 1024 },
    )
    await server.waitFor(/Server listening/)
  })
  after(async () => {
    await server?.kill('SIGTERM')
    await env.close()
  })

  it('refuses to start, in one line, when a cap set explicitly does not fit in the descriptor limit', async () => {
    const starting = spawnNode(
      'bin/coupon-rush.mjs',
      { ...common, PORT: '0', HTTP_MAX_CONNECTIONS: '10000' },
      ['serve'],
      { openFiles: 512 },
    )
    await new Promise((resolve) => starting.process.once('exit', resolve))
    assert.equal(starting.process.exitCode, 1)
    assert.deepEqual(starting.output().trim().split('\n'), [
      'cannot start: HTTP_MAX_CONNECTIONS=10000 plus 92 descriptors for Redis, Postgres and files needs 10092 open files, but ulimit -n is 512: lower HTTP_MAX_CONNECTIONS (at most 420) or raise ulimit -n',
    ])
  })

  it('lowers the default connection cap to what the descriptor limit holds, and says so', async () => {
    const port = await freePort()
    const small = spawnNode(
      'bin/coupon-rush.mjs',
      { ...common, PORT: String(port), LOG_LEVEL: 'info' },
      ['serve'],
      {
        openFiles: 512,
      },
    )
    try {
      await small.waitFor(/Server listening/)
      assert.match(small.output(), /capped at 420/)
      const ready = await request(`http://127.0.0.1:${port}/readyz`)
      const body = (await ready.body.json()) as { connections: { limit: number } }
      assert.equal(body.connections.limit, 420)
    } finally {
      await small.kill('SIGTERM')
    }
  })

  it('still serves another user and /readyz while one user tries 2,000 streams', async () => {
    const call = async (method: string, path: string, auth?: string, body?: unknown) => {
      const response = await request(`${baseUrl}${path}`, {
        method: method as 'GET',
        headers: {
          ...(auth === undefined ? {} : { authorization: `Bearer ${auth}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      return { status: response.statusCode, headers: response.headers, text: await response.body.text() }
    }
    const now = Date.now()
    const created = await call('POST', '/admin/coupons', TEST_ADMIN_TOKEN, {
      name: 'Crowded',
      discount: { type: 'FIXED', amount: 1000 },
      quantity: 10,
      issueStartsAt: new Date(now - 1_000).toISOString(),
      issueEndsAt: new Date(now + 600_000).toISOString(),
      validDays: 7,
    })
    assert.equal(created.status, 201)
    const couponId = (JSON.parse(created.text) as { id: number }).id

    const flood = Array.from({ length: 2_000 }, () =>
      openRawStream(baseUrl, `/me/events?access_token=${token('mallory')}`),
    )
    const answers = await Promise.all(flood.map((stream) => stream.opened.then(statusOf)))
    const tally = Object.groupBy(answers, (status) => (Number.isNaN(status) ? 'dropped' : String(status)))
    // Each new stream supersedes the user's oldest; what arrives while the connection cap is full is refused
    // (503 while descriptors allow, past that dropped unanswered). How many of each depends on timing.
    assert.deepEqual(
      Object.keys(tally).sort(),
      ['200', '503', 'dropped'].filter((key) => key in tally),
    )
    await eventually(
      () => flood.filter((stream) => !stream.socket.destroyed).length <= 4,
      'at most 4 held',
      30_000,
    )

    const issued = await call('POST', `/coupons/${couponId}/issuance`, token('alice'))
    assert.equal(issued.status, 202)
    const ready = await call('GET', '/readyz')
    assert.equal(ready.status, 200)
    const budget = JSON.parse(ready.text) as {
      eventStreams: { open: number }
      connections: { limit: number }
    }
    assert.ok(budget.eventStreams.open <= 4)
    assert.equal(budget.connections.limit, 900)
    for (const stream of flood) stream.socket.destroy()
  })

  it('logs a client abort at info as a client abort, not as a dependency outage', async () => {
    const url = new URL(baseUrl)
    await runConcurrently(3, 3, async () => {
      const socket = connect(Number(url.port), url.hostname)
      socket.on('error', () => {})
      await new Promise((resolve) => socket.once('connect', resolve))
      socket.write(
        `POST /coupons/1/issuance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token('quitter')}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":',
      )
      await new Promise((resolve) => setTimeout(resolve, 200))
      socket.resetAndDestroy()
    })
    const line = await server.waitFor(/client aborted the request/)
    assert.equal((JSON.parse(line) as { level: number }).level, 30)
    assert.doesNotMatch(server.output(), /dependency unavailable/)
  })
})
