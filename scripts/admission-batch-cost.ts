/**
 * Redis CPU per admitted user when admissions arrive as the service sends them: the admissions of one
 * event-loop turn share one call of the real admission script (src/redis/scripts/admitStream-4.lua, by
 * EVALSHA), several calls in flight. Against a redis-server of its own on a free port, nothing kept on disk
 * (the bench's Redis), so its CPU (utime + stime from /proc) is the admissions' alone. Every user is new, so
 * every admission takes the longest path (the record, the stream entry, stock and position).
 *
 * Usage: npx node scripts/admission-batch-cost.ts [--users-per-call 20] [--users 200000] [--rounds 4]
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { processCpuSeconds } from '../bench/lib/cpu.ts'
import { scriptSource } from '../src/redis/scripts.ts'

const { values } = parseArgs({
  options: {
    'users-per-call': { type: 'string', default: '20' },
    users: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '4' },
  },
})
const perCall = Number(values['users-per-call'])
const users = Number(values.users)
const rounds = Number(values.rounds)
/** Calls in flight at once, as several API connections' turns overlap. */
const LANES = 8
const KEYS = ['cr:{c:1}:state', 'cr:{c:1}:users', 'cr:{c:1}:stream', 'cr:{c:1}:prequeue']

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

/** A redis-server of this run's own, nothing on disk, once it accepts connections. */
async function startRedis(port: number): Promise<ChildProcess> {
  const server = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir()],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise<void>((resolve, reject) => {
    let log = ''
    server.stdout!.on('data', (chunk: Buffer) => {
      log += chunk.toString()
      if (log.includes('Ready to accept connections')) resolve()
    })
    server.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${log}`)))
  })
  server.stdout!.resume()
  return server
}

const port = await freePort()
const server = await startRedis(port)
const redis = new Redis({ port, lazyConnect: true })
try {
  redis.on('error', () => {})
  await redis.connect()
  const sha = (await redis.script('LOAD', scriptSource('admitStream'))) as string
  console.log(
    `redis-server pid ${server.pid} on 127.0.0.1:${port}; ${users} users per round, ${perCall} per call, ${LANES} calls in flight`,
  )
  for (let round = 1; round <= rounds; round++) {
    await redis.del(...KEYS)
    await redis.hset(KEYS[0]!, 'stock', users, 'seq', 0, 'soldOut', 0)
    let next = 0
    const before = processCpuSeconds(server.pid!)
    const startedAt = performance.now()
    const lane = async () => {
      while (next < users) {
        const batch: string[] = []
        while (batch.length < perCall && next < users) batch.push(`user-${round}-${next++}`)
        const replies = (await redis.evalsha(sha, KEYS.length, ...KEYS, 'cr:wake-up', ...batch)) as unknown[]
        for (const reply of replies) {
          if (!Array.isArray(reply) || typeof reply[0] !== 'number' || reply[0] < 1)
            throw new Error(`not admitted: ${JSON.stringify(reply)}`)
        }
      }
    }
    await Promise.all(Array.from({ length: LANES }, lane))
    const cpu = processCpuSeconds(server.pid!) - before
    const wallMs = performance.now() - startedAt
    const admitted = Number(await redis.hget(KEYS[0]!, 'seq'))
    console.log(
      `round ${round}: ${admitted} admitted, stream length ${await redis.xlen(KEYS[2]!)}; ` +
        `Redis CPU ${((cpu * 1e6) / admitted).toFixed(2)} µs per admitted user; ${Math.round(admitted / (wallMs / 1000))} users/s`,
    )
  }
} finally {
  redis.disconnect()
  server.kill()
}
