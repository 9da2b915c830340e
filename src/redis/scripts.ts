import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { AppError } from '../domain/errors.ts'
import type { RedisClient } from './client.ts'

const SCRIPTS_DIR = new URL('./scripts/', import.meta.url)

/** Bumped whenever a script's contract (keys, args, returns) changes, so mixed-version processes never share one. */
export const SCRIPTS_VERSION = 1

interface LoadedScript {
  name: string
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
      name: match[1]!,
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

/** Runs a script by EVALSHA, loading it on NOSCRIPT (a restarted Redis, or a cluster node that never saw it). */
export async function runScript(
  redis: RedisClient,
  name: ScriptName,
  keys: string[],
  args: (string | number)[],
): Promise<unknown> {
  const script = SCRIPTS.get(name)
  if (!script) throw new Error(`no Redis script ${name}`)
  if (keys.length !== script.numberOfKeys) {
    throw new Error(`script ${name} takes ${script.numberOfKeys} keys, got ${keys.length}`)
  }
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args)
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
    return redis.eval(script.lua, keys.length, ...keys, ...args)
  }
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
