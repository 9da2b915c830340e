/**
 * Processes the demo and the benchmark start and stop: the Coupon Rush server and worker, the bare Fastify
 * ceiling, Redis servers of the run's own; plus free ports, the Kafka broker check and a description of the machine.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = fileURLToPath(new URL('../../bin/coupon-rush.mjs', import.meta.url))
const BARE_SERVER = fileURLToPath(new URL('../bare-server.ts', import.meta.url))

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** The last lines of a log file, for an error message. */
export function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

/** A child process whose output goes to a log file; `stop` sends SIGTERM, then SIGKILL after a grace time. */
export class ChildService {
  readonly name: string
  readonly logFile: string
  readonly process: ChildProcess
  private readonly exited: Promise<number | null>

  constructor(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, logFile: string) {
    this.name = name
    this.logFile = logFile
    const fd = openSync(logFile, 'a')
    this.process = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', fd, fd] })
    closeSync(fd)
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code) => resolve(code))
      this.process.on('error', () => resolve(-1))
    })
  }

  get pid(): number | undefined {
    return this.process.pid
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null
  }

  /** Resolves once `check` passes; rejects (with the log's tail) if the process exits or time runs out. */
  async waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (!this.running) {
        throw new Error(`${this.name} exited before ${what} (log ${this.logFile}):\n${tail(this.logFile)}`)
      }
      if (await check().catch(() => false)) return
      await sleep(100)
    }
    throw new Error(
      `${this.name}: timed out waiting for ${what} (log ${this.logFile}):\n${tail(this.logFile)}`,
    )
  }

  async stop(graceMs = 15_000): Promise<void> {
    if (!this.running) return
    this.process.kill('SIGTERM')
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }
}

async function answers(url: string, status = 200): Promise<boolean> {
  const response = await request(url, { headersTimeout: 2_000, bodyTimeout: 2_000 })
  await response.body.dump()
  return response.statusCode === status
}

/** Environment of a Coupon Rush process under test (everything set explicitly, nothing inherited by luck). */
export interface ServiceConfig {
  port: number
  redisUrl: string
  databaseUrl: string
  schema: string
  redisPrefix: string
  jwtSecret: string
  adminToken: string
  kafkaBrokers?: string
  runWorkers?: boolean
  logLevel?: string
  extra?: Record<string, string>
  /** The coupon-rush.mjs to run (another checkout's, for before/after figures); default this checkout's. */
  cli?: string
}

export function serviceEnv(config: ServiceConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(config.port),
    HOST: '127.0.0.1',
    REDIS_URL: config.redisUrl,
    DATABASE_URL: config.databaseUrl,
    DATABASE_SCHEMA: config.schema,
    REDIS_PREFIX: config.redisPrefix,
    JWT_SECRET: config.jwtSecret,
    ADMIN_TOKEN: config.adminToken,
    LOG_LEVEL: config.logLevel ?? 'warn',
    RUN_WORKERS: config.runWorkers === false ? 'false' : 'true',
    // The load comes from one address (127.0.0.1) and polls: the limits still run (their cost is measured) but
    // the address and status ones never refuse.
    ADDRESS_LIMIT_PER_WINDOW: '100000000',
    STATUS_LIMIT_PER_USER: '1000000',
    ...config.extra,
  }
  delete env.REDIS_CLUSTER_NODES
  if (config.kafkaBrokers) env.KAFKA_BROKERS = config.kafkaBrokers
  else delete env.KAFKA_BROKERS
  return env
}

/** `coupon-rush serve` as a child process, resolved once /readyz answers. */
export async function startServer(config: ServiceConfig, logFile: string): Promise<ChildService> {
  const server = new ChildService(
    'server',
    process.execPath,
    [config.cli ?? CLI, 'serve'],
    serviceEnv(config),
    logFile,
  )
  await server.waitUntil(() => answers(`http://127.0.0.1:${config.port}/readyz`), '/readyz answered')
  return server
}

/** `coupon-rush worker` as a child process (no HTTP: ready is up to the caller to observe). */
export function startWorker(config: ServiceConfig, logFile: string): ChildService {
  return new ChildService(
    'worker',
    process.execPath,
    [config.cli ?? CLI, 'worker'],
    serviceEnv(config),
    logFile,
  )
}

/** The ceiling: a separate minimal Fastify process answering the same route with a small JSON. */
/** The bare route's server; with `hs256Secret`, the route checks each request's token first. */
export async function startBareServer(
  port: number,
  logFile: string,
  hs256Secret?: string,
): Promise<ChildService> {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port) }
  if (hs256Secret !== undefined) env.BARE_HS256_SECRET = hs256Secret
  const server = new ChildService('bare server', process.execPath, [BARE_SERVER], env, logFile)
  await server.waitUntil(() => answers(`http://127.0.0.1:${port}/healthz`), 'the bare route answered')
  return server
}

/**
 * A Redis of the run's own on a free port, with an empty data folder of its own (removed when it stops):
 * `none` keeps nothing on disk, `everysec` / `always` are `appendonly yes` with that fsync policy.
 */
export async function startPrivateRedis(
  logFile: string,
  persistence: 'none' | 'everysec' | 'always' = 'none',
  args: string[] = [],
): Promise<{ url: string; service: ChildService }> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), `coupon-rush-bench-redis-${persistence}-`))
  const aof =
    persistence === 'none' ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', persistence]
  const service = new ChildService(
    `redis-server (${persistence})`,
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      ...aof,
      '--daemonize',
      'no',
      ...args,
    ],
    process.env,
    logFile,
  )
  service.process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  await service.waitUntil(
    async () =>
      spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.includes('PONG'),
    'Redis answered PING',
    10_000,
  )
  return { url: `redis://127.0.0.1:${port}`, service }
}

export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/** The local broker of scripts/kafka/kafka.sh (KAFKA_PORT, default 9092), if one answers: `127.0.0.1:<port>`. */
export function kafkaBroker(): string | undefined {
  const status = spawnSync('bash', ['scripts/kafka/kafka.sh', 'status'], { cwd: ROOT, timeout: 30_000 })
  return status.status === 0 ? `127.0.0.1:${process.env.KAFKA_PORT ?? '9092'}` : undefined
}

export interface MachineInfo {
  cpus: number
  cpuModel: string
  memoryGiB: number
  node: string
  platform: string
  date: string
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown'
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((item) => item.startsWith('model name'))
    if (line) cpuModel = line.split(':').slice(1).join(':').trim()
  } catch {}
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout?.trim()
  return {
    cpus: Number(nproc) || cpus().length,
    cpuModel,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    date: new Date().toISOString(),
  }
}
