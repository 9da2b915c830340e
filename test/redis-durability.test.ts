import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type OwnRedis, startOwnRedis } from '../bench/lib/redis-server.ts'
import { connectRedis, createRedis, type RedisClient } from '../src/redis/client.ts'
import { type RedisDurability, readRedisDurability } from '../src/redis/durability.ts'
import { startTestApp, TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from './support/app.ts'
import { createTestEnv, eventually, type TestEnv } from './support/infra.ts'
import { spawnNode } from './support/processes.ts'

async function durabilityOf(server: OwnRedis): Promise<RedisDurability> {
  const client = createRedis({ url: server.url, clusterNodes: [] })
  await connectRedis(client)
  try {
    return await readRedisDurability(client)
  } finally {
    client.disconnect()
  }
}

async function withServer<T>(
  options: Parameters<typeof startOwnRedis>[0],
  use: (server: OwnRedis) => Promise<T>,
) {
  const server = await startOwnRedis(options)
  try {
    return await use(server)
  } finally {
    await server.destroy()
  }
}

describe('reading what a Redis keeps when it dies', () => {
  it('calls a Redis with no AOF, no snapshots and no replica volatile', async () => {
    const durability = await withServer({ persistence: 'none' }, durabilityOf)
    assert.equal(durability.verdict, 'volatile')
    assert.equal(durability.appendonly, false)
    assert.equal(durability.rdbSnapshots, false)
    assert.equal(durability.connectedReplicas, 0)
    assert.match(durability.detail, /loses every admission accepted and not yet written to Postgres/)
  })

  it('calls RDB snapshots alone volatile, losing what came after the last snapshot', async () => {
    const durability = await withServer({ persistence: 'none', args: ['--save', '60 1'] }, durabilityOf)
    assert.equal(durability.verdict, 'volatile')
    assert.equal(durability.rdbSnapshots, true)
    assert.match(durability.detail, /since the last snapshot/)
  })

  it('calls appendfsync everysec durable, losing about a second on a machine crash', async () => {
    const durability = await withServer({ persistence: 'everysec' }, durabilityOf)
    assert.deepEqual(
      { ...durability, detail: undefined },
      {
        verdict: 'durable',
        appendonly: true,
        appendfsync: 'everysec',
        rdbSnapshots: false,
        connectedReplicas: 0,
        detail: undefined,
      },
    )
    assert.match(durability.detail, /process crash loses nothing.*last second/)
  })

  it('calls appendfsync always durable, losing nothing even on a machine crash', async () => {
    const durability = await withServer({ persistence: 'always' }, durabilityOf)
    assert.equal(durability.verdict, 'durable')
    assert.equal(durability.appendfsync, 'always')
    assert.match(durability.detail, /loses nothing acknowledged, even a machine crash/)
  })

  it('calls a Redis without persistence but with a connected replica replicated', async () => {
    await withServer({ persistence: 'none' }, async (primary) => {
      await withServer(
        { persistence: 'none', args: ['--replicaof', '127.0.0.1', String(primary.port)] },
        async () => {
          let durability = await durabilityOf(primary)
          await eventually(async () => {
            durability = await durabilityOf(primary)
            return durability.connectedReplicas === 1
          }, 'the replica connected')
          assert.equal(durability.verdict, 'replicated')
          assert.equal(durability.appendonly, false)
          assert.match(durability.detail, /1 replica/)
        },
      )
    })
  })

  it('says it cannot tell, without failing, where CONFIG is disabled (as on managed Redis)', async () => {
    const durability = await withServer(
      { persistence: 'everysec', args: ['--rename-command', 'CONFIG', ''] },
      durabilityOf,
    )
    assert.equal(durability.verdict, 'unknown')
    assert.equal(durability.appendfsync, null)
    assert.equal(durability.rdbSnapshots, null)
    // INFO still answers: what it tells is kept.
    assert.equal(durability.appendonly, true)
    assert.equal(durability.connectedReplicas, 0)
    assert.match(durability.detail, /^Could not tell what a Redis crash would lose: CONFIG GET is refused/)
  })
})

describe('the durability check when `coupon-rush serve` starts', () => {
  let env: TestEnv
  before(async () => {
    env = await createTestEnv('durstart')
  })
  after(() => env.close())

  /** `serve` on `server`, with info logs: resolves with its output once it listens, or once it exits. */
  async function serveOn(server: OwnRedis, extra: Record<string, string> = {}) {
    const child = spawnNode(
      'bin/coupon-rush.mjs',
      {
        ...env.childEnv,
        REDIS_URL: server.url,
        PORT: '0',
        LOG_LEVEL: 'info',
        JWT_SECRET: TEST_JWT_SECRET,
        ADMIN_TOKEN: TEST_ADMIN_TOKEN,
        ...extra,
      },
      ['serve'],
    )
    const exited = new Promise<number | null>((resolve) =>
      child.process.once('exit', (code) => resolve(code)),
    )
    const outcome = await Promise.race([
      child.waitFor(/Server listening/).then(
        () => 'listening' as const,
        () => 'exited' as const,
      ),
      exited.then(() => 'exited' as const),
    ])
    await child.kill('SIGTERM')
    const lines = child.output().trim().split('\n')
    return {
      outcome,
      exitCode: await exited,
      lines,
      warnings: lines.filter((line) => /not durable/.test(line)),
    }
  }

  it('logs one warning line saying what a crash would lose on a Redis that keeps nothing', async () => {
    await withServer({ persistence: 'none' }, async (server) => {
      const { outcome, warnings } = await serveOn(server)
      assert.equal(outcome, 'listening')
      assert.equal(warnings.length, 1)
      const entry = JSON.parse(warnings[0]!) as { level: number; msg: string }
      assert.equal(entry.level, 40)
      assert.match(
        entry.msg,
        new RegExp(`Redis at REDIS_URL=redis://127.0.0.1:${server.port} is not durable`),
      )
      assert.match(entry.msg, /loses every admission accepted and not yet written to Postgres/)
      assert.match(entry.msg, /REDIS_DURABILITY=required/)
    })
  })

  it('logs no warning on a Redis with an append-only file', async () => {
    await withServer({ persistence: 'everysec' }, async (server) => {
      const { outcome, warnings } = await serveOn(server)
      assert.equal(outcome, 'listening')
      assert.deepEqual(warnings, [])
    })
  })

  it('refuses to start on a Redis that keeps nothing with REDIS_DURABILITY=required, in one line', async () => {
    await withServer({ persistence: 'none' }, async (server) => {
      const { outcome, exitCode, lines } = await serveOn(server, { REDIS_DURABILITY: 'required' })
      assert.equal(outcome, 'exited')
      assert.equal(exitCode, 1)
      assert.equal(lines.length, 1)
      assert.match(
        lines[0]!,
        /^cannot start: REDIS_DURABILITY=required but Redis at REDIS_URL=\S+ is not durable \(volatile\)/,
      )
    })
  })

  it('refuses with REDIS_DURABILITY=required where it cannot tell (CONFIG disabled)', async () => {
    await withServer(
      { persistence: 'everysec', args: ['--rename-command', 'CONFIG', ''] },
      async (server) => {
        const { outcome, exitCode, lines } = await serveOn(server, { REDIS_DURABILITY: 'required' })
        assert.equal(outcome, 'exited')
        assert.equal(exitCode, 1)
        assert.equal(lines.length, 1)
        assert.match(
          lines[0]!,
          /^cannot start: REDIS_DURABILITY=required but .* is not durable \(unknown\): Could not tell/,
        )
      },
    )
  })

  it('starts on a Redis that keeps nothing with REDIS_DURABILITY=ignore, silently', async () => {
    await withServer({ persistence: 'none' }, async (server) => {
      const { outcome, warnings } = await serveOn(server, { REDIS_DURABILITY: 'ignore' })
      assert.equal(outcome, 'listening')
      assert.deepEqual(warnings, [])
    })
  })

  it('warns that it could not tell, and still starts, where CONFIG is disabled', async () => {
    await withServer(
      { persistence: 'everysec', args: ['--rename-command', 'CONFIG', ''] },
      async (server) => {
        const { outcome, warnings } = await serveOn(server)
        assert.equal(outcome, 'listening')
        assert.equal(warnings.length, 1)
        assert.match(warnings[0]!, /not durable \(unknown\): Could not tell what a Redis crash would lose/)
      },
    )
  })
})

describe('the durability report in /readyz and /metrics', () => {
  let server: OwnRedis
  let admin: RedisClient
  before(async () => {
    server = await startOwnRedis({ persistence: 'none' })
    admin = createRedis({ url: server.url, clusterNodes: [] })
    await connectRedis(admin)
  })
  after(async () => {
    admin.disconnect()
    await server.destroy()
  })

  it('reports the verdict and fsync policy, read afresh on each call', async () => {
    const t = await startTestApp('durreport', { REDIS_URL: server.url })
    try {
      const volatile = await t.http('GET', '/readyz')
      assert.equal(volatile.status, 200)
      assert.equal(volatile.body.status, 'ready')
      const report = volatile.body.redisDurability as RedisDurability
      assert.equal(report.verdict, 'volatile')
      assert.equal(report.appendonly, false)
      assert.equal(report.connectedReplicas, 0)

      // Turned on at run time: the next answers show it.
      await admin.config('SET', 'appendonly', 'yes')
      await admin.config('SET', 'appendfsync', 'always')
      const durable = await t.http('GET', '/readyz')
      assert.deepEqual(
        { ...(durable.body.redisDurability as RedisDurability), detail: undefined },
        {
          verdict: 'durable',
          appendonly: true,
          appendfsync: 'always',
          rdbSnapshots: false,
          connectedReplicas: 0,
          detail: undefined,
        },
      )

      const metrics = await fetch(`${t.baseUrl}/metrics`).then((response) => response.text())
      const series = metrics.split('\n').filter((line) => line.startsWith('coupon_redis_durability{'))
      assert.deepEqual(series.sort(), [
        'coupon_redis_durability{verdict="durable",appendfsync="always"} 1',
        'coupon_redis_durability{verdict="replicated",appendfsync="always"} 0',
        'coupon_redis_durability{verdict="unknown",appendfsync="always"} 0',
        'coupon_redis_durability{verdict="volatile",appendfsync="always"} 0',
      ])
    } finally {
      await t.close()
    }
  })
})
