import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import { AppError } from '../domain/errors.ts'
import type { RedisClient } from './client.ts'

const SCRIPTS_DIR = new URL('./scripts/', import.meta.url)

/** Bumped whenever a script's contract (keys, args, returns) changes, so mixed-version processes never share one. */
export const SCRIPTS_VERSION = 1

interface LoadedScript {
  name: ScriptName
  numberOfKeys: number
  lua: string
  sha: string
}

/** Reads every `<name>-<keyCount>.lua` once; the key count in the file name is checked on each call. */
function loadScripts(): Map<string, LoadedScript> {
  const scripts = new Map<string, LoadedScript>()
  for (const file of readdirSync(SCRIPTS_DIR)) {
    const match = /^([a-zA-Z]+)-(\d+)\.lua$/.exec(file)
    if (!match) continue
    // The version line changes the SHA, so a new contract never runs a stale cached script.
    const lua = `-- coupon-rush scripts v${SCRIPTS_VERSION}\n${readFileSync(new URL(file, SCRIPTS_DIR), 'utf8')}`
    scripts.set(match[1]!, {
      // A file whose name is not a ScriptName is never asked for: scriptFor finds only ScriptNames.
      name: match[1]! as ScriptName,
      numberOfKeys: Number(match[2]),
      lua,
      sha: createHash('sha1').update(lua).digest('hex'),
    })
  }
  return scripts
}

const SCRIPTS = loadScripts()

export type ScriptName =
  | 'admitStream'
  | 'admitQueue'
  | 'rebuildCoupon'
  | 'markDecided'
  | 'resolveSoldOut'
  | 'lowerQueueStock'
  | 'renewDrainLease'
  | 'fairLockAcquire'
  | 'fairLockRelease'
  | 'releaseLease'
  | 'addSoldOut'

/** The loaded script `name`, checking the key count against its file name. */
function scriptFor(name: ScriptName, keys: string[]): LoadedScript {
  const script = SCRIPTS.get(name)
  if (!script) throw new Error(`no Redis script ${name}`)
  if (keys.length !== script.numberOfKeys) {
    throw new Error(`script ${name} takes ${script.numberOfKeys} keys, got ${keys.length}`)
  }
  return script
}

/** Runs a script by EVALSHA, loading it on NOSCRIPT (a restarted Redis, or a cluster node that never saw it). */
export async function runScript(
  redis: RedisClient,
  name: ScriptName,
  keys: string[],
  args: (string | number)[],
): Promise<unknown> {
  const script = scriptFor(name, keys)
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args)
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
    return redis.eval(script.lua, keys.length, ...keys, ...args)
  }
}

interface BatchedCall {
  script: LoadedScript
  keys: string[]
  args: (string | number)[]
  resolve(value: unknown): void
  reject(error: unknown): void
}

/**
 * Script calls of one event-loop turn, sent together. ioredis's auto-pipelining flushes on process.nextTick,
 * which runs after every socket callback, so requests that arrived in the same poll still went out one write
 * (and came back one wake-up) each; this flushes on setImmediate, after the whole poll.
 */
class ScriptBatch {
  private calls: BatchedCall[] = []
  private readonly redis: Redis

  constructor(redis: Redis) {
    this.redis = redis
  }

  add(script: LoadedScript, keys: string[], args: (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.calls.push({ script, keys, args, resolve, reject })
      if (this.calls.length === 1) setImmediate(() => this.flush())
    })
  }

  private flush(): void {
    const calls = this.calls
    this.calls = []
    const pipeline = this.redis.pipeline()
    for (const call of calls) pipeline.evalsha(call.script.sha, call.keys.length, ...call.keys, ...call.args)
    pipeline.exec().then(
      (results) => {
        calls.forEach((call, i) => {
          const [error, value] = results?.[i] ?? [new Error('no reply in the pipeline')]
          if (!error) call.resolve(value)
          else if (error.message.startsWith('NOSCRIPT'))
            runScript(this.redis, call.script.name, call.keys, call.args).then(call.resolve, call.reject)
          else call.reject(error)
        })
      },
      (error: unknown) => {
        for (const call of calls) call.reject(error)
      },
    )
  }
}

const BATCHES = new WeakMap<Redis, ScriptBatch>()

/** runScript for the hot path: calls made in one event-loop turn share one pipeline (see ScriptBatch). */
export function runScriptBatched(
  redis: RedisClient,
  name: ScriptName,
  keys: string[],
  args: (string | number)[],
): Promise<unknown> {
  // A cluster pipeline must stay on one slot; coupons live on many.
  if (!(redis instanceof Redis)) return runScript(redis, name, keys, args)
  let script: LoadedScript
  try {
    script = scriptFor(name, keys)
  } catch (error) {
    return Promise.reject(error)
  }
  let batch = BATCHES.get(redis)
  if (batch === undefined) {
    batch = new ScriptBatch(redis)
    BATCHES.set(redis, batch)
  }
  return batch.add(script, keys, args)
}

/** Loads every script into Redis once at startup (cheaper first calls; NOSCRIPT is still handled). */
export async function preloadScripts(redis: RedisClient): Promise<void> {
  await Promise.all([...SCRIPTS.values()].map((script) => redis.script('LOAD', script.lua)))
}

/** The negative return codes of the scripts, mapped to typed errors in this one place. */
export const SCRIPT_FAILURES = {
  [-1]: 'NOT_LOADED',
  [-2]: 'ALREADY_REQUESTED',
  [-3]: 'SOLD_OUT',
} as const

export type ScriptFailure = (typeof SCRIPT_FAILURES)[keyof typeof SCRIPT_FAILURES]

/** Redis lost this coupon's state (restart without persistence, failover, wiped keys): rebuild, then retry. */
export class CouponNotLoadedError extends Error {
  constructor(couponId: number) {
    super(`coupon ${couponId} has no state in Redis`)
    this.name = 'CouponNotLoadedError'
  }
}

/**
 * Reads a script reply `[code, ...rest]`: a code ≥ 0 is success and is returned; a negative code becomes its
 * typed error (`extra` builds the problem's extra members from the rest of the reply).
 */
export function scriptResult(
  couponId: number,
  reply: unknown,
  extra: (failure: ScriptFailure, rest: unknown[]) => Record<string, unknown> = () => ({}),
): { code: number; rest: unknown[] } {
  const [code, ...rest] = reply as [number, ...unknown[]]
  if (code >= 0) return { code, rest }
  const failure = SCRIPT_FAILURES[code as keyof typeof SCRIPT_FAILURES]
  if (failure === undefined) throw new Error(`unexpected script code ${code}`)
  if (failure === 'NOT_LOADED') throw new CouponNotLoadedError(couponId)
  throw new AppError(failure, undefined, { extra: extra(failure, rest) })
}
