/**
 * Logs a person can read: `serve` run as a real child process prints pino-pretty lines on a terminal (a
 * pseudo-terminal made by util-linux `script`) and JSON lines into a pipe, LOG_FORMAT overrides either way,
 * the generated admin token gets a banner of its own on a terminal, and LOG_REQUESTS sets the request log.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { freePort } from '../bench/lib/infra.ts'
import { requestLogLevel } from '../src/logging/logger.ts'
import { TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from './support/app.ts'
import { createTestEnv, eventually, type TestEnv } from './support/infra.ts'
import { ROOT, spawnNode } from './support/processes.ts'
import { TcpProxy } from './support/tcp-proxy.ts'

const LISTENING = /Server listening at/
// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes are what the test looks for
const ANSI = /\u001b\[[\d;]*m/g

/** Runs `serve` on a pseudo-terminal until `until` shows in its output, then stops it. */
async function serveOnTerminal(env: Record<string, string>, until: RegExp): Promise<string> {
  const child = spawn(
    'script',
    ['-qfec', `exec ${process.execPath} bin/coupon-rush.mjs serve`, '/dev/null'],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  )
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  try {
    await eventually(async () => until.test(output.replace(ANSI, '')), `${until} on the terminal`, 30_000)
  } finally {
    // The whole group: `script` and the server it runs.
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM')
    await exited
  }
  return output
}

/** Runs `serve` with its output in a pipe; `then` gets its port while it runs. */
async function serveIntoPipe(
  env: Record<string, string>,
  then: (port: number) => Promise<void> = async () => {},
) {
  const port = await freePort()
  const child = spawnNode('bin/coupon-rush.mjs', { ...env, PORT: String(port) }, ['serve'])
  try {
    await child.waitFor(LISTENING)
    await then(port)
    // pino writes asynchronously into a pipe: give the last lines a moment.
    await new Promise((resolve) => setTimeout(resolve, 200))
  } finally {
    await child.kill('SIGTERM')
  }
  return child.output()
}

const jsonLines = (output: string) =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string })

describe('log format and request log of a real serve process', () => {
  let env: TestEnv
  let common: Record<string, string>
  before(async () => {
    env = await createTestEnv('logging')
    common = {
      ...env.childEnv,
      JWT_SECRET: TEST_JWT_SECRET,
      ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      LOG_LEVEL: 'info',
    }
  })
  after(() => env.close())

  it('prints readable, coloured lines on a terminal, with the generated admin token in a banner', async () => {
    const { ADMIN_TOKEN: _set, ...withoutToken } = common
    const output = await serveOnTerminal(
      { ...withoutToken, PORT: '0' },
      /generated admin token for this run: \S+/,
    )
    const plain = output.replace(ANSI, '')
    assert.match(output, ANSI, 'coloured')
    assert.match(plain, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: Server listening at http:\/\/127\.0\.0\.1:\d+/m)
    assert.doesNotMatch(plain, /^\{"level"/m, 'no JSON lines')
    const token = /generated admin token for this run: (\S+)/.exec(plain)?.[1]
    assert.ok(token !== undefined)
    assert.match(
      plain,
      new RegExp(`│ ADMIN_TOKEN was not set\\. Admin token for this run:\\s+│[\\s\\S]*│\\s+${token}\\s+│`),
    )
  })

  it('prints JSON on a terminal with LOG_FORMAT=json, the admin token in its line only', async () => {
    const { ADMIN_TOKEN: _set, ...withoutToken } = common
    const output = await serveOnTerminal(
      { ...withoutToken, PORT: '0', LOG_FORMAT: 'json' },
      /generated admin token for this run/,
    )
    const lines = jsonLines(output.replaceAll('\r', ''))
    assert.equal(lines.find((line) => LISTENING.test(line.msg))?.level, 30)
    assert.equal(lines.find((line) => /generated admin token/.test(line.msg))?.level, 40)
    assert.doesNotMatch(output, /Admin token for this run/, 'no banner')
  })

  it('prints JSON into a pipe, and readable lines there with LOG_FORMAT=pretty', async () => {
    const json = await serveIntoPipe(common)
    assert.ok(jsonLines(json).some((line) => LISTENING.test(line.msg)))
    const pretty = await serveIntoPipe({ ...common, LOG_FORMAT: 'pretty' })
    assert.match(pretty, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: Server listening at/m)
    assert.doesNotMatch(pretty, ANSI, 'no colours into a pipe')
    assert.doesNotMatch(pretty, /^\{"level"/m)
  })

  it('logs every request with LOG_REQUESTS=all, and none that succeed by default', async () => {
    const hit = async (port: number) => {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`)
      assert.equal(response.status, 200)
    }
    const quiet = jsonLines(await serveIntoPipe(common, hit))
    assert.ok(
      quiet.some((line) => LISTENING.test(line.msg)),
      'startup lines are kept',
    )
    assert.ok(!quiet.some((line) => line.msg === 'request completed'))
    const all = jsonLines(await serveIntoPipe({ ...common, LOG_REQUESTS: 'all' }, hit))
    assert.ok(all.some((line) => line.msg === 'incoming request'))
    assert.ok(all.some((line) => line.msg === 'request completed'))
  })

  it('logs requests failed by an outage by default, and with LOG_REQUESTS=errors keeps only the process lines', async () => {
    const outage = async (requestLog: string) => {
      // Postgres behind a proxy this test cuts once the server runs: GET /readyz answers 503.
      const proxy = await new TcpProxy(
        '127.0.0.1',
        Number(new URL(common.DATABASE_URL!).port || 5432),
      ).start()
      const databaseUrl = new URL(common.DATABASE_URL!)
      databaseUrl.port = String(proxy.port)
      try {
        const output = await serveIntoPipe(
          { ...common, DATABASE_URL: databaseUrl.toString(), LOG_REQUESTS: requestLog },
          async (port) => {
            proxy.cut()
            const response = await fetch(`http://127.0.0.1:${port}/readyz`)
            assert.equal(response.status, 503)
          },
        )
        return jsonLines(output)
      } finally {
        await proxy.close()
      }
    }
    const failures = await outage('failures')
    assert.ok(failures.some((line) => line.level === 40 && line.msg === 'Postgres unreachable'))
    const errorsOnly = await outage('errors')
    assert.ok(
      errorsOnly.some((line) => LISTENING.test(line.msg)),
      'startup lines are kept',
    )
    assert.ok(
      errorsOnly.some((line) => line.msg === 'workers running'),
      'process lines are kept',
    )
    assert.ok(!errorsOnly.some((line) => line.msg === 'Postgres unreachable'))
  })

  it('never logs requests below LOG_LEVEL', () => {
    assert.equal(requestLogLevel({ logLevel: 'info', requestLog: 'all' }), 'info')
    assert.equal(requestLogLevel({ logLevel: 'info', requestLog: 'failures' }), 'warn')
    assert.equal(requestLogLevel({ logLevel: 'info', requestLog: 'errors' }), 'error')
    assert.equal(requestLogLevel({ logLevel: 'warn', requestLog: 'all' }), 'warn')
    assert.equal(requestLogLevel({ logLevel: 'fatal', requestLog: 'failures' }), 'fatal')
    assert.equal(requestLogLevel({ logLevel: 'debug', requestLog: 'all' }), 'info')
  })
})
