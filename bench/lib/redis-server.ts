/**
 * A `redis-server` of a test's or a script's own (the Debian binary), on a free loopback port with its own
 * data folder, for tests that kill, restart or reconfigure Redis and for scripts/replica-ack-cost.ts. The
 * machine's Redis is never touched.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './infra.ts'

export interface OwnRedisOptions {
  /** `appendonly yes` with this fsync policy; `none` keeps nothing on disk (as the machine's Redis). */
  persistence?: 'none' | 'everysec' | 'always'
  /** Extra `redis-server` arguments, e.g. `['--save', '60 1']`. */
  args?: string[]
}

export interface OwnRedis {
  readonly port: number
  readonly url: string
  readonly dataDir: string
  /** SIGKILL: the process dies at once, as in a crash; whatever it had not written to disk is gone. */
  kill(): Promise<void>
  /** Starts the server again on the same port from the same data folder (replaying its AOF, if any). */
  start(): Promise<void>
  /** Kills the server and removes its data folder. */
  destroy(): Promise<void>
}

export async function startOwnRedis(options: OwnRedisOptions = {}): Promise<OwnRedis> {
  const port = await freePort()
  const dataDir = await mkdtemp(join(tmpdir(), 'coupon-rush-redis-'))
  const persistence = options.persistence ?? 'everysec'
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dataDir,
    '--save',
    '',
    '--appendonly',
    persistence === 'none' ? 'no' : 'yes',
    ...(persistence === 'none' ? [] : ['--appendfsync', persistence]),
    ...(options.args ?? []),
  ]
  let child: ChildProcess | undefined
  const url = `redis://127.0.0.1:${port}`

  const start = async () => {
    const started = spawn('redis-server', args, { stdio: 'ignore' })
    child = started
    await waitUntilServing(url, started)
  }
  const kill = async () => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()))
    running.kill('SIGKILL')
    await exited
  }
  await start()
  return {
    port,
    url,
    dataDir,
    kill,
    start,
    async destroy() {
      await kill()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

async function waitUntilServing(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} (${url})`)
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    // Refused connections while the server starts are expected; connect() rejects with them below.
    probe.on('error', () => {})
    try {
      await probe.connect()
      // A server replaying its AOF answers LOADING until it is done.
      if ((await probe.ping()) === 'PONG') return
    } catch {
      // Not listening (or still loading) yet: try again shortly.
    } finally {
      probe.disconnect()
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`redis-server did not come up on ${url}`)
}
