import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { freePort } from '../bench/lib/infra.ts'
import { TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from './support/app.ts'
import { createTestEnv, type TestEnv } from './support/infra.ts'
import { ROOT } from './support/processes.ts'

/** Runs the CLI to its end on `node`, with only `env` (and PATH) set. */
async function runCli(env: Record<string, string>, args: string[], node = process.execPath) {
  const child = spawn(node, ['bin/coupon-rush.mjs', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const status = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { status, stdout, stderr, lines: stderr.trim().split('\n') }
}

describe('startup failures are one line naming the setting', () => {
  let env: TestEnv
  let common: Record<string, string>
  before(async () => {
    env = await createTestEnv('startup')
    common = { ...env.childEnv, JWT_SECRET: TEST_JWT_SECRET, ADMIN_TOKEN: TEST_ADMIN_TOKEN, PORT: '0' }
  })
  after(() => env.close())

  it('names REDIS_URL and the address tried when Redis does not answer', async () => {
    const port = await freePort()
    const result = await runCli({ ...common, REDIS_URL: `redis://127.0.0.1:${port}` }, ['serve'])
    assert.equal(result.status, 1)
    assert.deepEqual(result.lines, [
      `cannot start: Redis at REDIS_URL=redis://127.0.0.1:${port} does not answer (connect ECONNREFUSED 127.0.0.1:${port})`,
    ])
    assert.doesNotMatch(result.stdout + result.stderr, /\n\s+at /)
  })

  it('names REDIS_URL for the worker process too', async () => {
    const port = await freePort()
    const result = await runCli({ ...common, REDIS_URL: `redis://127.0.0.1:${port}` }, ['worker'])
    assert.equal(result.status, 1)
    assert.equal(result.lines.length, 1)
    assert.match(result.lines[0]!, /^cannot start: Redis at REDIS_URL=\S+ does not answer/)
  })

  it('names DATABASE_URL (password masked) when Postgres does not answer', async () => {
    const port = await freePort()
    const result = await runCli({ ...common, DATABASE_URL: `postgres://app:secret@127.0.0.1:${port}/shop` }, [
      'serve',
    ])
    assert.equal(result.status, 1)
    assert.deepEqual(result.lines, [
      `cannot start: Postgres at DATABASE_URL=postgres://app:***@127.0.0.1:${port}/shop cannot be used (connect ECONNREFUSED 127.0.0.1:${port})`,
    ])
  })

  it('names PORT when the port is taken', async () => {
    const taken: Server = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const address = taken.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    try {
      const result = await runCli({ ...common, PORT: String(port), LOG_LEVEL: 'warn' }, ['serve'])
      assert.equal(result.status, 1)
      assert.equal(result.lines.length, 1)
      assert.match(
        result.lines[0]!,
        new RegExp(`^cannot start: PORT=${port} is in use on 127\\.0\\.0\\.1:${port} \\(listen EADDRINUSE`),
      )
    } finally {
      await new Promise((resolve) => taken.close(resolve))
    }
  })

  it('says which Node is needed, and how to get it, on an older system Node', async () => {
    const systemNode = '/usr/bin/node'
    const version = spawnSync(systemNode, ['--version'], { encoding: 'utf8' }).stdout.trim()
    // This machine's system Node is 20 (Debian): the case a user meets running the bin by hand.
    assert.match(version, /^v(1\d|2[0-3])\./, `expected an older Node at ${systemNode}, got "${version}"`)
    const result = await runCli(common, ['serve'], systemNode)
    assert.equal(result.status, 1)
    assert.equal(result.lines.length, 1)
    assert.match(result.lines[0]!, /^coupon-rush needs Node\.js >= 24 \(this is v\d+/)
    assert.match(result.lines[0]!, /`npm start`/)
    assert.doesNotMatch(result.stderr, /ERR_UNKNOWN_FILE_EXTENSION/)
  })
})

describe('scripts/redis.sh: the project Redis', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coupon-rush-redis-sh-'))
  let port: number
  const script = (command: string, extra: Record<string, string> = {}) =>
    spawnSync('bash', ['scripts/redis.sh', command], {
      cwd: ROOT,
      env: { ...process.env, REDIS_PORT: String(port), REDIS_DIR: dir, ...extra },
      encoding: 'utf8',
    })
  before(async () => {
    port = await freePort()
  })
  after(() => {
    script('stop')
    rmSync(dir, { recursive: true, force: true })
  })

  it('starts a durable Redis with its data, pid file and log in its folder, and stops it', async () => {
    assert.equal(script('status').status, 1)
    const started = script('start')
    assert.equal(started.status, 0, started.stderr)
    assert.equal(script('start').status, 0, 'a second start finds it running')
    assert.equal(script('status').status, 0)
    const client = new Redis(`redis://127.0.0.1:${port}`)
    try {
      assert.deepEqual(await client.config('GET', 'appendonly'), ['appendonly', 'yes'])
      assert.deepEqual(await client.config('GET', 'appendfsync'), ['appendfsync', 'everysec'])
      assert.deepEqual(await client.config('GET', 'dir'), ['dir', dir])
    } finally {
      client.disconnect()
    }
    assert.ok(existsSync(join(dir, 'redis.pid')))
    assert.ok(existsSync(join(dir, 'redis.log')))
    assert.ok(existsSync(join(dir, 'appendonlydir')))
    assert.equal(script('stop').status, 0)
    assert.equal(script('status').status, 1)
  })

  it('fsyncs every write with REDIS_APPENDFSYNC=always, and rejects other values in one line', async () => {
    assert.equal(script('start', { REDIS_APPENDFSYNC: 'always' }).status, 0)
    const client = new Redis(`redis://127.0.0.1:${port}`)
    try {
      assert.deepEqual(await client.config('GET', 'appendfsync'), ['appendfsync', 'always'])
    } finally {
      client.disconnect()
    }
    const bad = script('start', { REDIS_APPENDFSYNC: 'never' })
    assert.equal(bad.status, 1)
    assert.equal(bad.stderr.trim(), 'redis: REDIS_APPENDFSYNC must be everysec or always, got "never"')
    assert.equal(script('stop').status, 0)
  })
})
