import { connect } from 'node:net'
import { request } from 'undici'
import type { TestApp } from './app.ts'

export interface RawAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: (Record<string, unknown> & { code?: string; status?: number; detail?: string }) | undefined
}

/**
 * A request with the body sent exactly as given (JSON.stringify cannot write `1e309`, a lone surrogate or
 * broken JSON), and the answer kept raw so a test can check its content type.
 */
export async function rawRequest(
  t: TestApp,
  method: string,
  path: string,
  options: { token?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<RawAnswer> {
  const response = await request(`${t.baseUrl}${path}`, {
    method: method as 'GET',
    headers: {
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    body: options.body,
  })
  const text = await response.body.text()
  let json: RawAnswer['json']
  try {
    json = JSON.parse(text) as RawAnswer['json']
  } catch {
    json = undefined
  }
  return { status: response.statusCode, headers: response.headers, text, json }
}

/**
 * Sends bytes on a fresh TCP connection and returns everything the server writes until it closes. With
 * `stall`, the connection stays open after the bytes (a client that stops sending), so only the server's
 * timeout closes it.
 */
export function rawExchange(baseUrl: string, bytes: string, { stall = false } = {}): Promise<string> {
  const url = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () =>
      stall ? socket.write(bytes) : socket.end(bytes),
    )
    let received = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      received += chunk
    })
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The server may reset the connection right after answering.
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') resolve(received)
      else reject(error)
    })
    socket.on('close', () => resolve(received))
  })
}

/** Status line, headers and JSON body of a raw HTTP/1.1 answer. */
export function parseRawAnswer(text: string) {
  const [head = '', body = ''] = text.split('\r\n\r\n', 2)
  const [statusLine = '', ...headerLines] = head.split('\r\n')
  const headers = Object.fromEntries(
    headerLines.map((line) => {
      const colon = line.indexOf(':')
      return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]
    }),
  )
  return {
    status: Number(statusLine.split(' ')[1]),
    headers,
    json: JSON.parse(body) as { code: string; status: number; detail: string },
  }
}

/** Rows of the tables a bad request must never touch. */
export async function rowCounts(t: TestApp) {
  const { rows } = await t.env.db.query<{ coupons: number; user_coupons: number; redeemed: number }>(
    `SELECT (SELECT count(*)::int FROM coupons) AS coupons,
            (SELECT count(*)::int FROM user_coupons) AS user_coupons,
            (SELECT count(*)::int FROM user_coupons WHERE redeemed_at IS NOT NULL) AS redeemed`,
  )
  return rows[0]!
}
