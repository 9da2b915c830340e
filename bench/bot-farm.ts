/**
 * `npm run bench:bot-farm` (node bench/bot-farm.ts): who gets the coupons when a bot farm joins the crowd.
 * A farm of 2,000 accounts behind 4 addresses floods at full speed against 3,000 people from 3,000 addresses
 * arriving over 2 s, for 1,000 coupons, three times: limits and proof of work off, limits on, both on
 * (bench/lib/crowds.ts says how each crowd is modelled). Then the server CPU per request on the sold-out path
 * with the limits and proof of work on against off. Two `serve` processes (limits off, limits on) on a Redis
 * of the run's own, TRUST_PROXY=127.0.0.1 so each client's address is its X-Forwarded-For. Prints Markdown.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createChallenge, solveChallenge, verifySolution } from 'altcha-lib/v1'
import { Agent, request } from 'undici'
import { signUserToken } from '../src/auth/tokens.ts'
import { integerOption, parseCommandLine, runMain } from './lib/cli.ts'
import { emptyTally, runFarm, runPeople, type SaleTarget, type Tally } from './lib/crowds.ts'
import {
  type ChildService,
  freePort,
  type ServiceConfig,
  startPrivateRedis,
  startServer,
} from './lib/infra.ts'
import { createDatabaseIfMissing, dropSchema } from './lib/probes.ts'

const OPTIONS = {
  coupons: { type: 'string' },
  people: { type: 'string' },
  accounts: { type: 'string' },
  'person-solve-ms': { type: 'string' },
  'farm-cores': { type: 'string' },
  'cpu-requests': { type: 'string' },
  help: { type: 'boolean' },
} as const

const USAGE = `usage: node bench/bot-farm.ts [options]
  --coupons N          coupons on sale (default 1000)
  --people N           people, one address each, arriving over 2 s (default 3000)
  --accounts N         bot accounts, behind 4 addresses (default 2000)
  --person-solve-ms N  a person's solve in the browser (default 640: the Chromium median, README)
  --farm-cores N       threads the farm solves on (default 2: this machine's cores)
  --cpu-requests N     sold-out requests per CPU measurement round (default 8000)`

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/coupon_rush_bench'
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-01'
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const POW_HMAC_KEY = 'bench-pow-key-bench-pow-key-bench-pow-key-01'
const SPREAD_MS = 2_000
const FARM_ADDRESSES = 4
/** The farm's requests in flight at once. */
const FARM_CONCURRENCY = 64
/** Alternating rounds of the sold-out CPU measurement (a busy machine drifts: the report shows each). */
const CPU_ROUNDS = 5
/** Each sale ends by then at the latest (the people are done in about 2 s). */
const SALE_LIMIT_MS = 15_000

interface Settings {
  coupons: number
  people: number
  accounts: number
  personSolveMs: number
  farmCores: number
  cpuRequests: number
}

interface Scenario {
  name: string
  limits: boolean
  proofOfWork: boolean
}

const SCENARIOS: Scenario[] = [
  { name: 'limits and proof of work off', limits: false, proofOfWork: false },
  { name: 'limits on', limits: true, proofOfWork: false },
  { name: 'limits and proof of work on', limits: true, proofOfWork: true },
]

interface Servers {
  off: string
  on: string
}

async function createCoupon(baseUrl: string, quantity: number, proofOfWork: boolean): Promise<number> {
  const now = Date.now()
  const response = await request(`${baseUrl}/admin/coupons`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'Bot farm sale',
      discount: { type: 'FIXED', amount: 1000 },
      quantity,
      issueStartsAt: new Date(now - 1_000).toISOString(),
      issueEndsAt: new Date(now + 3_600_000).toISOString(),
      validDays: 7,
      ...(proofOfWork ? { proofOfWork: {} } : {}),
    }),
  })
  const body = (await response.body.json()) as { id?: number }
  if (response.statusCode !== 201 || body.id === undefined)
    throw new Error(`creating the coupon failed: ${response.statusCode} ${JSON.stringify(body)}`)
  return body.id
}

/** One sale: both crowds at once; the share each side got. */
async function runSale(servers: Servers, scenario: Scenario, index: number, settings: Settings) {
  const baseUrl = scenario.limits ? servers.on : servers.off
  const couponId = await createCoupon(baseUrl, settings.coupons, scenario.proofOfWork)
  // Connections of their own per crowd: the farm's do not queue behind the people's, nor theirs behind it.
  const peopleConnections = new Agent({ connections: 1_024, keepAliveTimeout: 10_000 })
  const farmConnections = new Agent({ connections: FARM_CONCURRENCY, keepAliveTimeout: 10_000 })
  const target = (dispatcher: Agent): SaleTarget => ({
    baseUrl,
    couponId,
    jwtSecret: JWT_SECRET,
    powHmacKey: POW_HMAC_KEY,
    proofOfWork: scenario.proofOfWork,
    dispatcher,
  })
  const people = emptyTally()
  const bots = emptyTally()
  const started = performance.now()
  let peopleDone = false
  const runId = `${index}-${randomBytes(2).toString('hex')}`
  const peopleFinished = runPeople(
    target(peopleConnections),
    { people: settings.people, spreadMs: SPREAD_MS, solveMs: settings.personSolveMs, runId },
    people,
  ).then(() => {
    peopleDone = true
  })
  await Promise.all([
    peopleFinished,
    runFarm(
      target(farmConnections),
      {
        accounts: settings.accounts,
        addresses: FARM_ADDRESSES,
        concurrency: FARM_CONCURRENCY,
        cores: settings.farmCores,
        runId,
        addressBlock: index,
        deadline: () => peopleDone || performance.now() - started > SALE_LIMIT_MS,
      },
      bots,
    ),
  ])
  const seconds = (Math.max(people.lastAcceptedAt, bots.lastAcceptedAt) - started) / 1_000
  await Promise.all([peopleConnections.close(), farmConnections.close()])
  return { scenario, people, bots, seconds }
}

/** Server CPU seconds so far, from its /metrics (prom-client's process_cpu_seconds_total). */
async function serverCpuSeconds(baseUrl: string): Promise<number> {
  const response = await request(`${baseUrl}/metrics`)
  const text = await response.body.text()
  const match = /^process_cpu_seconds_total (\S+)$/m.exec(text)
  if (match === null) throw new Error('no process_cpu_seconds_total in /metrics')
  return Number(match[1])
}

/**
 * µs of server CPU per request on the sold-out path: distinct users, each from an address of its own, asking
 * once for a sold-out coupon (answered 410 from memory); the proof-of-work client sends no solution.
 */
async function soldOutCpuPerRequest(
  baseUrl: string,
  couponId: number,
  requests: number,
  round: string,
  dispatcher: Agent,
): Promise<number> {
  const before = await serverCpuSeconds(baseUrl)
  let next = 0
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < requests) {
        const i = next++
        const response = await request(`${baseUrl}/coupons/${couponId}/issuance`, {
          method: 'POST',
          dispatcher,
          headers: {
            authorization: `Bearer ${signUserToken(JWT_SECRET, `late-${round}-${i}`)}`,
            'x-forwarded-for': `10.200.${(i >> 8) & 255}.${i & 255}`,
          },
        })
        await response.body.dump()
        if (response.statusCode !== 410) throw new Error(`sold-out path answered ${response.statusCode}`)
      }
    }),
  )
  return (((await serverCpuSeconds(baseUrl)) - before) * 1e6) / requests
}

async function measureSoldOutCost(servers: Servers, settings: Settings, dispatcher: Agent) {
  const off = await createCoupon(servers.off, 1, false)
  const on = await createCoupon(servers.on, 1, true)
  // Sell both out: the one coupon goes to a first person, the second hears 410.
  for (const [baseUrl, id, pow] of [
    [servers.off, off, false],
    [servers.on, on, true],
  ] as const) {
    const tally = emptyTally()
    const target = {
      baseUrl,
      couponId: id,
      jwtSecret: JWT_SECRET,
      powHmacKey: POW_HMAC_KEY,
      proofOfWork: pow,
      dispatcher,
    }
    await runPeople(target, { people: 2, spreadMs: 0, solveMs: 0, runId: `first-${id}` }, tally)
    if (tally.accepted !== 1) throw new Error(`selling out coupon ${id}: ${JSON.stringify(tally)}`)
  }
  await sleep(1_500) // the proof-of-work check reads the stock again after a second
  const rounds: { off: number; on: number }[] = []
  for (let round = 0; round < CPU_ROUNDS; round++) {
    const cost = { off: 0, on: 0 }
    // Alternating, the order flipped each round, so drift on a busy machine falls on both alike.
    const order = round % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)
    for (const which of order) {
      const id = which === 'off' ? off : on
      cost[which] = await soldOutCpuPerRequest(
        servers[which],
        id,
        settings.cpuRequests,
        `${round}${which}`,
        dispatcher,
      )
    }
    rounds.push(cost)
    console.error(
      `bot-farm: sold-out CPU round ${round + 1}: off ${cost.off.toFixed(1)} µs, on ${cost.on.toFixed(1)} µs`,
    )
  }
  return rounds
}

/**
 * µs of CPU one `verifySolution` of altcha-lib costs (what the server spends on each solution it checks,
 * before its one Redis SET NX), at the default difficulty; the median of 5 runs of 2,000.
 */
async function verifyCostMicros(): Promise<number> {
  const challenge = await createChallenge({ hmacKey: POW_HMAC_KEY, maxNumber: 100_000 })
  const { algorithm, salt, signature } = challenge
  const solution = await solveChallenge(challenge.challenge, salt, algorithm, challenge.maxnumber).promise
  const payload = btoa(
    JSON.stringify({ algorithm, challenge: challenge.challenge, number: solution?.number, salt, signature }),
  )
  const runs: number[] = []
  for (let run = 0; run < 5; run++) {
    const before = process.cpuUsage()
    for (let i = 0; i < 2_000; i++) {
      if (!(await verifySolution(payload, POW_HMAC_KEY))) throw new Error('the solution did not verify')
    }
    const used = process.cpuUsage(before)
    runs.push((used.user + used.system) / 2_000)
  }
  return runs.sort((a, b) => a - b)[2]!
}

function share(tally: Tally, coupons: number): string {
  return `${tally.accepted} (${((tally.accepted / coupons) * 100).toFixed(1)}%)`
}

function report(
  settings: Settings,
  sales: Awaited<ReturnType<typeof runSale>>[],
  cpu: { off: number; on: number }[],
  verifyMicros: number,
): string {
  const lines = [
    `A bot farm of ${settings.accounts} accounts behind ${FARM_ADDRESSES} addresses, flooding at full speed (${FARM_CONCURRENCY} requests in flight; with proof of work, solving on ${settings.farmCores} threads with altcha-lib's solver), against ${settings.people} people from ${settings.people} addresses arriving over ${SPREAD_MS / 1000} s (each solving once in ${settings.personSolveMs} ms, the Chromium median), for ${settings.coupons} coupons:`,
    '',
    '| | bots got | people got | bot issuance requests | bots refused 429 / 403 | challenges the farm solved | last coupon given after |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...sales.map(
      ({ scenario, people, bots, seconds }) =>
        `| ${scenario.name} | ${share(bots, settings.coupons)} | ${share(people, settings.coupons)} | ${bots.requests} | ${bots.rateLimited} / ${bots.powRefused} | ${scenario.proofOfWork ? bots.solved : '–'} | ${seconds.toFixed(1)} s |`,
    ),
    '',
    `Server CPU per request on the sold-out path (${settings.cpuRequests} users, an address each, one request each, answered 410):`,
    '',
    '| round | limits and proof of work off | limits and proof of work on | difference |',
    '| --- | --- | --- | --- |',
    ...cpu.map(
      ({ off, on }, i) =>
        `| ${i + 1} | ${off.toFixed(1)} µs | ${on.toFixed(1)} µs | ${(((on - off) / off) * 100).toFixed(1)}% |`,
    ),
    '',
    `Verifying one solution (altcha-lib's verifySolution, in this process): ${verifyMicros.toFixed(1)} µs of CPU.`,
  ]
  return lines.join('\n')
}

async function main(): Promise<void> {
  const values = parseCommandLine(process.argv.slice(2), OPTIONS)
  if (values.help) {
    console.log(USAGE)
    return
  }
  const settings: Settings = {
    coupons: integerOption(values, 'coupons', 1_000, 1, 1_000_000),
    people: integerOption(values, 'people', 3_000, 1, 60_000),
    accounts: integerOption(values, 'accounts', 2_000, 1, 60_000),
    personSolveMs: integerOption(values, 'person-solve-ms', 640, 0, 60_000),
    farmCores: integerOption(values, 'farm-cores', 2, 1, 64),
    cpuRequests: integerOption(values, 'cpu-requests', 8_000, 100, 60_000),
  }
  await createDatabaseIfMissing(DATABASE_URL)
  const logDir = mkdtempSync(join(tmpdir(), 'coupon-rush-bot-farm-'))
  const { url: redisUrl, service: redisService } = await startPrivateRedis(join(logDir, 'redis.log'))
  const schema = `bot_farm_${randomBytes(3).toString('hex')}`
  const services: ChildService[] = []
  const dispatcher = new Agent({ connections: 32, keepAliveTimeout: 10_000 })
  const base = async (limits: boolean): Promise<ServiceConfig> => ({
    port: await freePort(),
    redisUrl,
    databaseUrl: DATABASE_URL,
    schema,
    redisPrefix: 'farm:',
    jwtSecret: JWT_SECRET,
    adminToken: ADMIN_TOKEN,
    extra: {
      TRUST_PROXY: '127.0.0.1',
      POW_HMAC_KEY,
      // Off: limits no crowd reaches; on: the defaults (300 per address and 20 per user, per 10 s).
      ADDRESS_LIMIT_PER_WINDOW: limits ? '300' : '100000000',
      RATE_LIMIT_PER_USER: limits ? '20' : '1000000',
    },
  })
  try {
    const servers: Partial<Servers> = {}
    for (const which of ['off', 'on'] as const) {
      const config = await base(which === 'on')
      services.push(await startServer(config, join(logDir, `serve-${which}.log`)))
      servers[which] = `http://127.0.0.1:${config.port}`
    }
    const sales = []
    for (const [index, scenario] of SCENARIOS.entries()) {
      console.error(`bot-farm: sale ${index + 1} of ${SCENARIOS.length}: ${scenario.name}`)
      sales.push(await runSale(servers as Servers, scenario, index + 1, settings))
    }
    const cpu = await measureSoldOutCost(servers as Servers, settings, dispatcher)
    console.log(report(settings, sales, cpu, await verifyCostMicros()))
  } finally {
    await dispatcher.close()
    await Promise.allSettled(services.map((service) => service.stop()))
    await dropSchema(DATABASE_URL, schema).catch(() => {})
    await redisService.stop()
  }
}

runMain('bot-farm', main)
