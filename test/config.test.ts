import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ConfigError, EnvironmentSchema, loadConfig } from '../src/config/config.ts'
import { ROOT } from './support/processes.ts'

describe('configuration', () => {
  it('has the documented defaults (docs/api.md) and generates secrets when they are unset', () => {
    const config = loadConfig({})
    assert.equal(config.port, 3000)
    assert.equal(config.host, '127.0.0.1')
    assert.equal(config.redisUrl, 'redis://127.0.0.1:6390')
    assert.equal(config.redisDurability, 'warn')
    assert.equal(config.runWorkers, true)
    assert.equal(config.jwtSecretGenerated, true)
    assert.equal(config.databaseUrl, 'postgres://127.0.0.1:5432/coupon_rush')
    assert.equal(config.redisPrefix, 'cr:')
    assert.deepEqual(config.kafkaBrokers, [])
    assert.equal(config.adminTokenGenerated, true)
    assert.ok(config.jwtSecret.length >= 32)
    assert.equal(config.logFormat, 'auto')
    assert.equal(config.requestLog, 'failures')
    assert.deepEqual(config.saleMetrics, { maxSales: 20, endedWithinMs: 3_600_000 })
  })

  const bad: [string, string][] = [
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['REDIS_URL', 'http://127.0.0.1'],
    ['DATABASE_URL', 'not a url'],
    ['REDIS_CLUSTER_NODES', '127.0.0.1'],
    ['KAFKA_BROKERS', 'broker:port'],
    ['JWT_SECRET', 'short'],
    ['ADMIN_TOKEN', 'short'],
    ['REDIS_PREFIX', 'cr{x}:'],
    ['QUEUE_DRAIN_CRON', 'every second'],
    ['LOG_LEVEL', 'loud'],
    ['LOG_FORMAT', 'fancy'],
    ['LOG_REQUESTS', 'some'],
    ['METRICS_SALES_MAX', '5000'],
    ['REDIS_DURABILITY', 'maybe'],
    ['RUN_WORKERS', 'no'],
    ['STREAM_BATCH_SIZE', '0'],
    ['TRUST_PROXY', '2'],
    ['TRUST_PROXY', '10.0.0.0/33'],
    ['TRUST_PROXY', '127.0.0.1, proxy.internal'],
    ['ADDRESS_LIMIT_WINDOW_MS', '500'],
  ]
  for (const [variable, value] of bad) {
    it(`rejects ${variable}=${value} naming the variable`, () => {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) =>
          error instanceof ConfigError && error.variable === variable && error.message.includes(variable),
      )
    })
  }

  it('trusts no proxy by default, and the addresses, ranges and names TRUST_PROXY lists', () => {
    assert.deepEqual(loadConfig({}).trustProxy, [])
    assert.deepEqual(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,fd00::/8, loopback' }).trustProxy, [
      '10.0.0.0/8',
      '127.0.0.1',
      'fd00::/8',
      'loopback',
    ])
  })

  it('accepts the ten-minute queue schedule, cluster nodes and Kafka brokers', () => {
    const config = loadConfig({
      QUEUE_DRAIN_CRON: '0 */10 * * * *',
      REDIS_CLUSTER_NODES: '127.0.0.1:7000, 127.0.0.1:7001',
      KAFKA_BROKERS: '127.0.0.1:9092',
    })
    assert.deepEqual(config.redisClusterNodes, [
      { host: '127.0.0.1', port: 7000 },
      { host: '127.0.0.1', port: 7001 },
    ])
    assert.deepEqual(config.kafkaBrokers, ['127.0.0.1:9092'])
  })

  it('lists every variable of the schema, and only those, in the README Configuration table', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Layout'))
    const tableRows = section.split('\n').filter((line) => line.startsWith('| `'))
    const documented = tableRows.flatMap((row) =>
      [...row.split('|')[1]!.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]),
    )
    assert.deepEqual(documented.sort(), Object.keys(EnvironmentSchema.properties).sort())
  })

  it('stops `coupon-rush serve` with one clear line naming the bad variable', () => {
    const result = spawnSync(process.execPath, ['bin/coupon-rush.mjs', 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: 'eighty' },
      encoding: 'utf8',
    })
    assert.equal(result.status, 2)
    assert.equal(result.stderr.trim().split('\n').length, 1)
    assert.match(result.stderr, /^invalid configuration: PORT must be a whole number/)
  })
})
