/**
 * Debian's Prometheus (scripts/prometheus.sh) scraping a real deployment, an API process without workers and
 * a separate worker process, with the rule files of deploy/prometheus/ as they ship: when the worker is
 * stopped mid-sale (SIGSTOP), CouponWriterLagging goes from inactive to firing, and resolves once it
 * resumes (SIGCONT).
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort } from '../bench/lib/infra.ts'
import { signUserToken } from '../src/auth/tokens.ts'
import { runConcurrently, TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from './support/app.ts'
import { createTestEnv, eventually, issuedRows, type TestEnv } from './support/infra.ts'
import { type Child, ROOT, spawnNode, waitUntilReady } from './support/processes.ts'

const RULE_FILES = ['coupon-rush.rules.yml', 'coupon-rush.alerts.yml'].map((file) =>
  join(ROOT, 'deploy/prometheus', file),
)
const ALERT = 'CouponWriterLagging'

interface PrometheusAlert {
  labels: Record<string, string>
  state: 'pending' | 'firing'
}

/** A throwaway Prometheus: 1 s scrape and evaluation, its own port and data directory. */
function startPrometheus(port: number, target: string, dir: string): ChildProcess {
  const config = join(dir, 'prometheus.yml')
  writeFileSync(
    config,
    JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: RULE_FILES,
      scrape_configs: [{ job_name: 'coupon-rush', static_configs: [{ targets: [target] }] }],
    }),
  )
  const child = spawn(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  child.stderr?.on('data', (chunk: Buffer) => {
    if (process.env.TEST_LOG_LEVEL !== undefined) process.stderr.write(chunk)
  })
  return child
}

describe('Prometheus with the deploy/ rules, scraping an API process and a worker process', () => {
  let env: TestEnv
  let api: Child
  let worker: Child
  let prometheus: ChildProcess
  let apiPort: number
  let promUrl: string
  const dir = mkdtempSync(join(tmpdir(), 'coupon-rush-prometheus-'))

  const prom = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${promUrl}${path}`)
    const body = (await response.json()) as { status: string; data: T }
    assert.equal(body.status, 'success', path)
    return body.data
  }
  const lagAlerts = async (couponId: number) =>
    (await prom<{ alerts: PrometheusAlert[] }>('/api/v1/alerts')).alerts.filter(
      (alert) => alert.labels.alertname === ALERT && alert.labels.coupon_id === String(couponId),
    )
  const ruleState = async () => {
    const { groups } = await prom<{ groups: { rules: { name: string; state?: string }[] }[] }>(
      '/api/v1/rules',
    )
    return groups.flatMap((group) => group.rules).find((rule) => rule.name === ALERT)?.state
  }
  const admit = (couponId: number, users: string[]) =>
    runConcurrently(users.length, 16, async (i) => {
      const response = await fetch(`http://127.0.0.1:${apiPort}/coupons/${couponId}/issuance`, {
        method: 'POST',
        headers: { authorization: `Bearer ${signUserToken(TEST_JWT_SECRET, users[i]!)}` },
      })
      await response.body?.cancel()
      return response.status
    })

  before(async () => {
    env = await createTestEnv('prom')
    const common = {
      ...env.childEnv,
      JWT_SECRET: TEST_JWT_SECRET,
      ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      RATE_LIMIT_PER_USER: '1000',
    }
    apiPort = await freePort()
    api = spawnNode('bin/coupon-rush.mjs', { ...common, PORT: String(apiPort), RUN_WORKERS: 'false' }, [
      'serve',
    ])
    worker = spawnNode('bin/coupon-rush.mjs', common, ['worker'])
    const promPort = await freePort()
    promUrl = `http://127.0.0.1:${promPort}`
    prometheus = startPrometheus(promPort, `127.0.0.1:${apiPort}`, dir)
    await waitUntilReady(apiPort)
    await eventually(
      () =>
        fetch(`${promUrl}/-/ready`).then(
          (r) => r.ok,
          () => false,
        ),
      'Prometheus ready',
      30_000,
    )
  })
  after(async () => {
    worker.process.kill('SIGCONT')
    prometheus.kill('SIGTERM')
    await Promise.all([api.kill('SIGTERM'), worker.kill('SIGTERM')])
    await env.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('fires CouponWriterLagging while the worker is stopped mid-sale, and resolves when it resumes', async () => {
    const now = Date.now()
    const created = await fetch(`http://127.0.0.1:${apiPort}/admin/coupons`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'Watched sale',
        discount: { type: 'FIXED', amount: 1000 },
        quantity: 1000,
        issueStartsAt: new Date(now - 1_000).toISOString(),
        issueEndsAt: new Date(now + 600_000).toISOString(),
        validDays: 7,
      }),
    })
    assert.equal(created.status, 201)
    const couponId = ((await created.json()) as { id: number }).id

    // A healthy start: rows follow admissions, Prometheus scrapes them, and the alert is inactive.
    const first = await admit(
      couponId,
      Array.from({ length: 100 }, (_, i) => `early${i}`),
    )
    assert.ok(first.every((status) => status === 202))
    await eventually(
      async () => (await issuedRows(env.db, couponId)).length === 100,
      'the worker wrote the rows',
    )
    await eventually(async () => {
      const { result } = await prom<{ result: { value: [number, string] }[] }>(
        `/api/v1/query?query=${encodeURIComponent(`coupon_sale_issued{coupon_id="${couponId}"}`)}`,
      )
      return result[0]?.value[1] === '100'
    }, 'Prometheus scraped the rows')
    assert.equal(await ruleState(), 'inactive')
    assert.deepEqual(await lagAlerts(couponId), [])

    // The writer stops mid-sale; the API keeps accepting.
    assert.ok(worker.process.kill('SIGSTOP'))
    const stoppedAt = Date.now()
    const second = await admit(
      couponId,
      Array.from({ length: 100 }, (_, i) => `late${i}`),
    )
    assert.ok(second.every((status) => status === 202))
    await eventually(
      async () => (await lagAlerts(couponId)).some((alert) => alert.state === 'firing'),
      `${ALERT} firing`,
      45_000,
    )
    const firedAfterMs = Date.now() - stoppedAt
    // The rule: oldest unwritten request older than 5 s, for 10 s.
    assert.ok(firedAfterMs >= 15_000, `fired after ${firedAfterMs} ms`)
    assert.equal((await issuedRows(env.db, couponId)).length, 100, 'nothing written while stopped')

    assert.ok(worker.process.kill('SIGCONT'))
    const resumedAt = Date.now()
    await eventually(
      async () => (await issuedRows(env.db, couponId)).length === 200,
      'the rows caught up',
      30_000,
    )
    await eventually(async () => (await lagAlerts(couponId)).length === 0, `${ALERT} resolved`, 30_000)
    assert.equal(await ruleState(), 'inactive')
    console.log(
      `# ${ALERT}: fired ${firedAfterMs} ms after SIGSTOP, resolved ${Date.now() - resumedAt} ms after SIGCONT`,
    )
  })
})
