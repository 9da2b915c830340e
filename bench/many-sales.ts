/**
 * `npm run bench:many-sales` (node bench/many-sales.ts): many sales at once. Opens `--coupons` `stream` coupons on a Redis of the run's
 * own, then measures what they cost while nobody requests anything (Redis commands per second from INFO
 * deltas, connections), runs a few hot sales among them (request -> row latency, correctness), and measures
 * the idle cost again after they drained. Runs in one process (`serve` with its workers) and in two API
 * processes (RUN_WORKERS=false) plus one `worker`. Prints a Markdown table for docs/benchmarks.md.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { signUserToken } from '../src/auth/tokens.ts'
import { AdminClient } from './lib/admin.ts'
import { integerOption, parseCommandLine, runMain, stringOption, UsageError } from './lib/cli.ts'
import {
  type ChildService,
  freePort,
  type ServiceConfig,
  startPrivateRedis,
  startServer,
  startWorker,
} from './lib/infra.ts'
import { nowMs, summarize } from './lib/load-protocol.ts'
import {
  BenchDb,
  BenchRedis,
  commandDelta,
  createDatabaseIfMissing,
  dropSchema,
  RowFollower,
} from './lib/probes.ts'

const OPTIONS = {
  coupons: { type: 'string' },
  hot: { type: 'string' },
  requests: { type: 'string' },
  'idle-seconds': { type: 'string' },
  concurrency: { type: 'string' },
  topology: { type: 'string' },
  help: { type: 'boolean' },
} as const

const USAGE = `usage: node bench/many-sales.ts [options]
  --coupons N        open stream coupons (default 1000)
  --hot N            of which hot: requested over HTTP (default 5)
  --requests N       requests per hot coupon, one per user (default 300)
  --idle-seconds N   length of each idle measurement window (default 20: two sweeps)
  --concurrency N    requests in flight during the hot sales (default 16)
  --topology T       one | split | both (default both): one serve process, or 2 API + 1 worker`

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/coupon_rush_bench'
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-01'
const ADMIN_TOKEN = 'bench-admin-token-0123456789'

interface IdleWindow {
  seconds: number
  commandsPerSecond: number
  top: [string, number][]
}

interface TopologyResult {
  topology: string
  processes: string
  idleBefore: IdleWindow
  idleAfter: IdleWindow
  connections: number
  connectionsByName: Record<string, number>
  hot: { coupons: number; accepted: number; rows: number; p50: number; p99: number; max: number }
}

/** Commands Redis ran per second over the window, without the probe's own INFO calls. */
async function idleWindow(redis: BenchRedis, seconds: number): Promise<IdleWindow> {
  const before = await redis.commandStats()
  const started = nowMs()
  await sleep(seconds * 1_000)
  const after = await redis.commandStats()
  const elapsed = (nowMs() - started) / 1_000
  const delta = commandDelta(before, after)
  const total = [...delta.values()].reduce((sum, calls) => sum + calls, 0)
  const top = [...delta]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([command, calls]): [string, number] => [command, Math.round((calls / elapsed) * 10) / 10])
  return { seconds: elapsed, commandsPerSecond: Math.round((total / elapsed) * 10) / 10, top }
}

/** Redis connections by client name, without the probe's own. */
async function connections(redis: BenchRedis): Promise<Record<string, number>> {
  const list = String(await redis.redis.call('CLIENT', 'LIST'))
  const byName: Record<string, number> = {}
  for (const line of list.trim().split('\n')) {
    if (/\bcmd=client\|list\b/.test(line)) continue
    const name = /\bname=(\S*)/.exec(line)?.[1] || '(unnamed)'
    // Per-coupon connection names end in the coupon id: group them.
    const group = name.replace(/-c\d+-\d+$/, '-c<id>-<n>').replace(/^[^-]+-\d+-[a-z0-9]+-/, '<consumer>-')
    byName[group] = (byName[group] ?? 0) + 1
  }
  return byName
}

type Topology = 'one' | 'split'
type Settings = { coupons: number; hot: number; requests: number; idleSeconds: number; concurrency: number }

/** One `serve` with its workers, or two API processes (RUN_WORKERS=false) and one `worker`. */
async function startTopology(
  topology: Topology,
  base: (port: number) => ServiceConfig,
  services: ChildService[],
  logDir: string,
): Promise<number[]> {
  const apiPorts: number[] = []
  if (topology === 'one') {
    const port = await freePort()
    services.push(await startServer(base(port), join(logDir, 'serve-one.log')))
    apiPorts.push(port)
    return apiPorts
  }
  for (const name of ['api-1', 'api-2']) {
    const port = await freePort()
    services.push(await startServer({ ...base(port), runWorkers: false }, join(logDir, `${name}.log`)))
    apiPorts.push(port)
  }
  const worker = startWorker(base(await freePort()), join(logDir, 'worker.log'))
  services.push(worker)
  await worker.waitUntil(async () => true, 'started')
  return apiPorts
}

/** Opens the coupons: the first `hot` with stock for most of their requests, the rest with 100 each. */
async function openCoupons(admin: AdminClient, settings: Settings, topology: Topology): Promise<number[]> {
  const ids: number[] = []
  for (let i = 0; i < settings.coupons; i++) {
    const quantity = i < settings.hot ? Math.floor((settings.requests * 5) / 6) : 100
    ids.push(await admin.createCoupon('stream', quantity, `Sale ${i}`))
    if ((i + 1) % 100 === 0) console.error(`many-sales: ${topology}: ${i + 1} coupons open`)
  }
  return ids
}

/**
 * The hot sales: one request per user, sent from a few concurrent clients, alternating API processes; then
 * request -> row latency as seen by polling Postgres.
 */
async function runHotSales(
  hotIds: number[],
  apiPorts: number[],
  settings: Settings,
  db: BenchDb,
  dispatcher: Agent,
): Promise<TopologyResult['hot']> {
  const followers = new Map(hotIds.map((id) => [id, new RowFollower(db, id, 5)]))
  const sentAt = new Map<string, number>()
  const accepted = new Map<number, number>()
  let next = 0
  const total = settings.hot * settings.requests
  await Promise.all(
    Array.from({ length: settings.concurrency }, async () => {
      while (next < total) {
        const index = next++
        const couponId = hotIds[index % settings.hot]!
        const userId = `user-${Math.floor(index / settings.hot)}`
        const port = apiPorts[index % apiPorts.length]!
        const started = nowMs()
        const response = await request(`http://127.0.0.1:${port}/coupons/${couponId}/issuance`, {
          method: 'POST',
          dispatcher,
          headers: { authorization: `Bearer ${signUserToken(JWT_SECRET, userId)}` },
        })
        await response.body.text()
        if (response.statusCode === 202) {
          sentAt.set(`${couponId}/${userId}`, started)
          accepted.set(couponId, (accepted.get(couponId) ?? 0) + 1)
        }
      }
    }),
  )
  const latencies: number[] = []
  let rows = 0
  for (const id of hotIds) {
    const seen = await followers.get(id)!.finish(accepted.get(id) ?? 0, 60_000)
    rows += seen.size
    for (const [userId, at] of seen) {
      const sent = sentAt.get(`${id}/${userId}`)
      if (sent !== undefined) latencies.push(at - sent)
    }
  }
  const latency = summarize(latencies)
  return {
    coupons: settings.hot,
    accepted: [...accepted.values()].reduce((sum, n) => sum + n, 0),
    rows,
    p50: Math.round(latency.p50),
    p99: Math.round(latency.p99),
    max: Math.round(latency.max),
  }
}

async function runTopology(topology: Topology, settings: Settings, logDir: string): Promise<TopologyResult> {
  const { url: redisUrl, service: redisService } = await startPrivateRedis(
    join(logDir, `redis-${topology}.log`),
  )
  const schema = `many_sales_${topology}_${randomBytes(3).toString('hex')}`
  const services: ChildService[] = []
  const bench = new BenchRedis(redisUrl)
  const db = new BenchDb(DATABASE_URL, schema)
  const base = (port: number): ServiceConfig => ({
    port,
    redisUrl,
    databaseUrl: DATABASE_URL,
    schema,
    redisPrefix: 'many:',
    jwtSecret: JWT_SECRET,
    adminToken: ADMIN_TOKEN,
    extra: { RATE_LIMIT_PER_USER: '100000' },
  })
  try {
    const apiPorts = await startTopology(topology, base, services, logDir)
    const dispatcher = new Agent({ connections: 32, keepAliveTimeout: 10_000 })
    const admin = new AdminClient(`http://127.0.0.1:${apiPorts[0]}`, ADMIN_TOKEN, dispatcher)
    const ids = await openCoupons(admin, settings, topology)
    // Let every process notice the new coupons before the quiet is measured.
    await sleep(3_000)
    const idleBefore = await idleWindow(bench, settings.idleSeconds)
    const connectionsByName = await connections(bench)
    const hot = await runHotSales(ids.slice(0, settings.hot), apiPorts, settings, db, dispatcher)
    await sleep(2_000)
    const idleAfter = await idleWindow(bench, settings.idleSeconds)
    await dispatcher.close()
    const totalConnections = Object.values(connectionsByName).reduce((sum, n) => sum + n, 0)
    return {
      topology,
      processes: topology === 'one' ? '1 serve (workers in it)' : '2 serve (RUN_WORKERS=false) + 1 worker',
      idleBefore,
      idleAfter,
      connections: totalConnections,
      connectionsByName,
      hot,
    }
  } finally {
    await Promise.allSettled(services.map((service) => service.stop()))
    await bench.close()
    await db.close()
    await dropSchema(DATABASE_URL, schema).catch(() => {})
    await redisService.stop()
  }
}

async function main(): Promise<void> {
  const values = parseCommandLine(process.argv.slice(2), OPTIONS)
  if (values.help) {
    console.log(USAGE)
    return
  }
  const settings = {
    coupons: integerOption(values, 'coupons', 1_000, 1, 100_000),
    hot: integerOption(values, 'hot', 5, 0, 100),
    requests: integerOption(values, 'requests', 300, 1, 100_000),
    idleSeconds: integerOption(values, 'idle-seconds', 20, 1, 120),
    concurrency: integerOption(values, 'concurrency', 16, 1, 1_000),
  }
  if (settings.hot > settings.coupons) throw new UsageError('--hot cannot exceed --coupons')
  const topology = stringOption(values, 'topology') ?? 'both'
  if (!['one', 'split', 'both'].includes(topology)) throw new UsageError('--topology is one, split or both')
  await createDatabaseIfMissing(DATABASE_URL)
  const logDir = mkdtempSync(join(tmpdir(), 'coupon-rush-many-sales-'))
  const results: TopologyResult[] = []
  for (const which of topology === 'both' ? (['one', 'split'] as const) : [topology as Topology]) {
    console.error(
      `many-sales: ${which}: ${settings.coupons} coupons, ${settings.hot} hot (logs in ${logDir})`,
    )
    const result = await runTopology(which, settings, logDir)
    console.error(JSON.stringify(result, null, 2))
    results.push(result)
  }
  console.log(
    `| processes | open coupons | idle Redis commands/s (before hot / after) | per coupon per second | Redis connections | hot request -> row p50 / p99 / max | hot accepted = rows |`,
  )
  console.log('|---|---|---|---|---|---|---|')
  for (const r of results) {
    const perCoupon = (r.idleAfter.commandsPerSecond / settings.coupons).toFixed(3)
    console.log(
      `| ${r.processes} | ${settings.coupons} | ${r.idleBefore.commandsPerSecond} / ${r.idleAfter.commandsPerSecond} | ${perCoupon} | ${r.connections} | ${r.hot.p50} / ${r.hot.p99} / ${r.hot.max} ms | ${r.hot.accepted} = ${r.hot.rows} |`,
    )
  }
}

runMain('many-sales', main)
