import type { FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import { signUserToken } from '../../src/auth/tokens.ts'
import { type Config, loadConfig } from '../../src/config/config.ts'
import { buildApp } from '../../src/http/app.ts'
import { createTestEnv, type TestEnv, type TestEnvOptions } from './infra.ts'

export const TEST_JWT_SECRET = 'test-secret-test-secret-test-secret-0123'
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789'

export interface TestApp {
  app: FastifyInstance
  env: TestEnv
  config: Config
  baseUrl: string
  adminToken: string
  tokenFor(userId: string): string
  http(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string> },
  ): Promise<HttpResult>
  createCoupon(body?: Record<string, unknown>): Promise<{ id: number } & Record<string, unknown>>
  close(): Promise<void>
}

export interface HttpResult {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Record<string, unknown> & { code?: string }
}

/**
 * A real server on an ephemeral port, against real Redis and Postgres, with this test's own schema and key
 * prefix; `overrides` are environment variables (e.g. QUEUE_DRAIN_CRON).
 */
export async function startTestApp(
  label: string,
  overrides: Record<string, string> = {},
  options: { runWorkers?: boolean; env?: TestEnvOptions } = {},
): Promise<TestApp> {
  const env = await createTestEnv(label, options.env)
  const config = loadConfig({
    ...env.childEnv,
    PORT: '0',
    JWT_SECRET: TEST_JWT_SECRET,
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    RATE_LIMIT_PER_USER: '1000',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...overrides,
  })
  const app = await buildApp({ config, runWorkers: options.runWorkers ?? true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const baseUrl = `http://127.0.0.1:${port}`
  const dispatcher = new Agent({ connections: 64, pipelining: 1, keepAliveTimeout: 10_000 })

  const http: TestApp['http'] = async (method, path, { token, body, headers = {} } = {}) => {
    const response = await request(`${baseUrl}${path}`, {
      method: method as 'GET',
      dispatcher,
      headers: {
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await response.body.text()
    return {
      status: response.statusCode,
      headers: response.headers,
      body: text === '' ? {} : (JSON.parse(text) as HttpResult['body']),
    }
  }

  return {
    app,
    env,
    config,
    baseUrl,
    adminToken: TEST_ADMIN_TOKEN,
    tokenFor: (userId) => signUserToken(TEST_JWT_SECRET, userId),
    http,
    async createCoupon(body = {}) {
      const now = Date.now()
      const result = await http('POST', '/admin/coupons', {
        token: TEST_ADMIN_TOKEN,
        body: {
          name: 'Flash sale',
          discount: { type: 'FIXED', amount: 5000 },
          quantity: 10,
          issueStartsAt: new Date(now - 1_000).toISOString(),
          issueEndsAt: new Date(now + 3_600_000).toISOString(),
          validDays: 30,
          ...body,
        },
      })
      if (result.status !== 201)
        throw new Error(`creating coupon failed: ${result.status} ${JSON.stringify(result.body)}`)
      return result.body as { id: number } & Record<string, unknown>
    },
    async close() {
      await app.close()
      await dispatcher.close()
      await env.close()
    },
  }
}

/** Runs `count` tasks with at most `concurrency` in flight; results in task order. */
export async function runConcurrently<T>(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array(count)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const index = next++
        results[index] = await task(index)
      }
    }),
  )
  return results
}
