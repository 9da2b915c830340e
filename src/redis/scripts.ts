import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { Cluster, type Redis } from 'ioredis'
import { execOnSlot, type RedisClient } from './client.ts'

const SCRIPTS_DIR = new URL('./scripts/', import.meta.url)
const INCLUDES_DIR = new URL('./includes/', SCRIPTS_DIR)

/** Bumped whenever a script's contract (keys, args, returns) changes, so mixed-version processes never share one. */
const SCRIPTS_VERSION = 5

type ScriptArg = string | number

interface LoadedScript {
  name: string
  numberOfKeys: number
  lua: string
  sha: string
}

const INCLUDE_LINE = /^--- @include "([a-zA-Z]+)"$/gm

/**
 * Replaces each `--- @include "name"` line with `includes/name.lua` (as BullMQ does), once per script, so
 * shared Lua (the clock, the record codec) is written once and still runs inside one atomic script.
 */
function withIncludes(lua: string, included: Set<string>): string {
  return lua.replace(INCLUDE_LINE, (_line, name: string) => {
    if (included.has(name)) return ''
    included.add(name)
    return withIncludes(readFileSync(new URL(`${name}.lua`, INCLUDES_DIR), 'utf8'), included)
  })
}

/** Reads every `<name>-<keyCount>.lua` once: the file names are the script names. */
function loadScripts(): Map<string, LoadedScript> {
  const scripts = new Map<string, LoadedScript>()
  for (const file of readdirSync(SCRIPTS_DIR)) {
    const match = /^([a-zA-Z]+)-(\d+)\.lua$/.exec(file)
    if (!match) continue
    const source = readFileSync(new URL(file, SCRIPTS_DIR), 'utf8')
    // The version line changes the SHA, so a new contract never runs a stale cached script.
    const lua = `-- coupon-rush scripts v${SCRIPTS_VERSION}\n${withIncludes(source, new Set())}`
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
const DEFINED = new Set<string>()

/** A script's Lua as Redis runs it (includes resolved), for tools such as scripts/admission-ceiling.sh. */
export function scriptSource(name: string): string {
  const script = SCRIPTS.get(name)
  if (script === undefined) throw new Error(`no script ${name}`)
  return script.lua
}

/** The script names, as the `.lua` files give them. */
export function scriptFileNames(): string[] {
  return [...SCRIPTS.keys()]
}

/** The SHA1 of each script, in the order of scriptFileNames (what EVALSHA and SCRIPT EXISTS take). */
export function scriptShas(): string[] {
  return [...SCRIPTS.values()].map((script) => script.sha)
}

/** The scripts a typed wrapper was defined for so far (a test checks every file has one). */
export function definedScriptNames(): string[] {
  return [...DEFINED]
}

/**
 * Wait for replicas before trusting a write (REDIS_REPLICA_ACK): `WAIT replicas timeoutMs` on the node that
 * ran it, right after it, so a failover cannot lose what was acknowledged.
 */
export interface ReplicaAck {
  replicas: number
  timeoutMs: number
}

/** A reply, and how many replicas had it when WAIT returned (undefined: no WAIT was asked for). */
interface Replicated<Reply> {
  reply: Reply
  replicas: number | undefined
}

/** A script and the decoder of its reply: the only way the code runs a script. */
export interface Script<Reply> {
  readonly name: string
  readonly numberOfKeys: number
  /** EVALSHA, loading the script on NOSCRIPT (a restarted Redis, or a cluster node that never saw it). */
  run(redis: RedisClient, keys: string[], args: ScriptArg[]): Promise<Reply>
  /** `run` for the hot path: calls of one event-loop turn share one pipeline (see ScriptBatch). */
  runBatched(redis: RedisClient, keys: string[], args: ScriptArg[]): Promise<Reply>
  /** `runBatched`, then (with `ack`) one WAIT for the whole batch on the same node and connection. */
  runReplicated(
    redis: RedisClient,
    keys: string[],
    args: ScriptArg[],
    ack: ReplicaAck | undefined,
  ): Promise<Replicated<Reply>>
}

/**
 * Script `name`'s file, taken by one wrapper only (a second one, or a missing file, fails at startup), with
 * the check that a call gives it its number of keys.
 */
function claimScript(name: string): { script: LoadedScript; checked: (keys: string[]) => void } {
  const script = SCRIPTS.get(name)
  if (script === undefined) throw new Error(`no Redis script file ${name}-<keys>.lua`)
  if (DEFINED.has(name)) throw new Error(`Redis script ${name} has a wrapper already`)
  DEFINED.add(name)
  const checked = (keys: string[]) => {
    if (keys.length !== script.numberOfKeys) {
      throw new Error(`script ${name} takes ${script.numberOfKeys} keys, got ${keys.length}`)
    }
  }
  return { script, checked }
}

/**
 * The typed wrapper of script `name` (the file `<name>-<keys>.lua`, which must exist: a missing one fails
 * at startup). `decode` turns the raw reply into the script's documented return value.
 */
export function defineScript<Reply>(name: string, decode: (reply: unknown) => Reply): Script<Reply> {
  const { script, checked } = claimScript(name)
  return {
    name,
    numberOfKeys: script.numberOfKeys,
    async run(redis, keys, args) {
      checked(keys)
      return decode(await evalScript(redis, script, keys, args))
    },
    runBatched(redis, keys, args) {
      return this.runReplicated(redis, keys, args, undefined).then(({ reply }) => reply)
    },
    runReplicated(redis, keys, args, ack) {
      try {
        checked(keys)
      } catch (error) {
        return Promise.reject(error)
      }
      return batchFor(redis, keys[0] ?? '', ack)
        .add(script, keys, args)
        .then(({ reply, replicas }) => ({ reply: decode(reply), replicas }))
    },
  }
}

/** At most this many items share one call of an item script (ARGV stays small, the script short). */
export const MAX_ITEMS_PER_CALL = 128

/**
 * A script that runs once per item (a user to admit) and takes many at once: ARGV is the fixed arguments,
 * then the items; the reply is one reply per item, in their order, an error reply in the place of an item
 * that failed (the script runs each under pcall). Calls of one event-loop turn with the same keys and fixed
 * arguments arrays share one EVALSHA (up to MAX_ITEMS_PER_CALL items), and each caller gets its own item's
 * reply. "The same" is the same array objects, so no key string is built per call: a caller builds them
 * once (CouponState does, per coupon); equal arrays built anew only get calls of their own.
 */
export interface ItemScript<Reply> {
  readonly name: string
  readonly numberOfKeys: number
  /** Runs `item` in this turn's call for `keys` and `fixedArgs`, then (with `ack`) one WAIT for the batch. */
  runItem(
    redis: RedisClient,
    keys: string[],
    fixedArgs: ScriptArg[],
    item: string,
    ack: ReplicaAck | undefined,
  ): Promise<Replicated<Reply>>
}

/** The typed wrapper of item script `name`; `decode` reads one item's reply. */
export function defineItemScript<Reply>(name: string, decode: (reply: unknown) => Reply): ItemScript<Reply> {
  const { script, checked } = claimScript(name)
  return {
    name,
    numberOfKeys: script.numberOfKeys,
    runItem(redis, keys, fixedArgs, item, ack) {
      try {
        checked(keys)
      } catch (error) {
        return Promise.reject(error)
      }
      return batchFor(redis, keys[0] ?? '', ack)
        .addItem(script, keys, fixedArgs, item)
        .then(({ reply, replicas }) => ({ reply: decode(reply), replicas }))
    },
  }
}

async function evalScript(
  redis: RedisClient,
  script: LoadedScript,
  keys: string[],
  args: ScriptArg[],
): Promise<unknown> {
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
  args: ScriptArg[]
  resolve(value: Replicated<unknown>): void
  reject(error: unknown): void
}

/**
 * The hash tag of a key (the part between the first `{` and the next `}`, as Redis Cluster hashes it), or
 * the whole key: keys with the same tag are on one slot, so their calls may share a cluster pipeline.
 */
function slotTag(key: string): string {
  const open = key.indexOf('{')
  const close = open < 0 ? -1 : key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : key
}

interface ItemWaiter {
  resolve(value: Replicated<unknown>): void
  reject(error: unknown): void
}

/** One call of an item script: its items' waiters, each given its own element of the array reply. */
class ItemCall implements BatchedCall {
  readonly script: LoadedScript
  readonly keys: string[]
  readonly fixedArgs: ScriptArg[]
  readonly args: ScriptArg[]
  readonly waiters: ItemWaiter[] = []

  constructor(script: LoadedScript, keys: string[], fixedArgs: ScriptArg[]) {
    this.script = script
    this.keys = keys
    this.fixedArgs = fixedArgs
    this.args = [...fixedArgs]
  }

  /** Whether `item` of this script on these keys and fixed arguments (the same arrays) can join this call. */
  takes(script: LoadedScript, fixedArgs: ScriptArg[]): boolean {
    return this.script === script && this.fixedArgs === fixedArgs && this.waiters.length < MAX_ITEMS_PER_CALL
  }

  resolve({ reply, replicas }: Replicated<unknown>): void {
    const { waiters } = this
    if (!Array.isArray(reply) || reply.length !== waiters.length) {
      this.reject(new Error(`script ${this.script.name}: not one reply per item`))
      return
    }
    for (let i = 0; i < waiters.length; i++) {
      const itemReply: unknown = reply[i]
      if (itemReply instanceof Error) waiters[i]?.reject(itemReply)
      else waiters[i]?.resolve({ reply: itemReply, replicas })
    }
  }

  reject(error: unknown): void {
    for (const waiter of this.waiters) waiter.reject(error)
  }
}

// One batch per client (per slot on a cluster: a cluster pipeline must stay on one slot) and per ack setting.
const BATCHES = new WeakMap<RedisClient, Map<string, ScriptBatch>>()

function batchFor(redis: RedisClient, firstKey: string, ack: ReplicaAck | undefined): ScriptBatch {
  let batches = BATCHES.get(redis)
  if (batches === undefined) {
    batches = new Map()
    BATCHES.set(redis, batches)
  }
  const ackKey = ack === undefined ? '-' : `${ack.replicas}/${ack.timeoutMs}`
  const id = redis instanceof Cluster ? `${ackKey} ${slotTag(firstKey)}` : ackKey
  let batch = batches.get(id)
  if (batch === undefined) {
    if (batches.size >= 10_000) batches.clear()
    batch = new ScriptBatch(redis, ack)
    batches.set(id, batch)
  }
  return batch
}

/**
 * Script calls of one event-loop turn, sent together. ioredis's auto-pipelining flushes on process.nextTick,
 * which runs after every socket callback, so requests that arrived in the same poll still went out one write
 * (and came back one wake-up) each; this flushes on setImmediate, after the whole poll. With a replica ack,
 * one WAIT ends the pipeline: it runs on the same connection after every script of the batch, so it covers
 * all of them (and a NOSCRIPT retry is followed by a WAIT of its own). One pipeline is out at a time: calls
 * made while it is out wait for its replies (at most the command timeout), then go together, so a busy
 * process sends fewer, fuller pipelines (fewer writes, fewer script calls, larger receipt trees).
 */
class ScriptBatch {
  private calls: BatchedCall[] = []
  // This turn's open item call per keys array (see ItemScript).
  private itemCalls = new Map<string[], ItemCall>()
  // Whether a pipeline is out: the next waits for it, so under load a batch holds a whole round trip's calls.
  private inFlight = false
  private readonly redis: RedisClient
  private readonly ack: ReplicaAck | undefined

  constructor(redis: RedisClient, ack: ReplicaAck | undefined) {
    this.redis = redis
    this.ack = ack
  }

  add(script: LoadedScript, keys: string[], args: ScriptArg[]): Promise<Replicated<unknown>> {
    return new Promise((resolve, reject) => {
      this.push({ script, keys, args, resolve, reject })
    })
  }

  /**
   * Adds `item` to this turn's call of the script on these keys and fixed arguments (a new call once it has
   * MAX_ITEMS_PER_CALL), in the pipeline where that call's first item came: the order of the turn's calls
   * and of the items within a call is the order they were added.
   */
  addItem(
    script: LoadedScript,
    keys: string[],
    fixedArgs: ScriptArg[],
    item: string,
  ): Promise<Replicated<unknown>> {
    return new Promise((resolve, reject) => {
      let call = this.itemCalls.get(keys)
      if (call === undefined || !call.takes(script, fixedArgs)) {
        call = new ItemCall(script, keys, fixedArgs)
        this.itemCalls.set(keys, call)
        this.push(call)
      }
      call.args.push(item)
      call.waiters.push({ resolve, reject })
    })
  }

  private push(call: BatchedCall): void {
    this.calls.push(call)
    if (this.calls.length === 1 && !this.inFlight) setImmediate(() => this.flush())
  }

  private flush(): void {
    const calls = this.calls
    this.calls = []
    this.itemCalls.clear()
    const pipeline = this.redis.pipeline()
    for (const call of calls) pipeline.evalsha(call.script.sha, call.keys.length, ...call.keys, ...call.args)
    this.inFlight = true
    const sent = this.send(pipeline)
    // The calls added while this pipeline was out go together once it is back (ordering kept: one at a time).
    const landed = (): void => {
      this.inFlight = false
      if (this.calls.length > 0) setImmediate(() => this.flush())
    }
    sent.then(landed, landed)
    sent.then(
      ({ results, replicas }) => {
        calls.forEach((call, i) => {
          const [error, reply] = results[i] ?? [new Error('no reply in the pipeline')]
          if (!error) call.resolve({ reply, replicas })
          else if (error.message.startsWith('NOSCRIPT')) {
            this.evalOne(call).then(
              (value) => call.resolve(value),
              (evalError: unknown) => call.reject(evalError),
            )
          } else call.reject(error)
        })
      },
      (error: unknown) => {
        for (const call of calls) call.reject(error)
      },
    )
  }

  /** Runs the pipeline, with the WAIT last when acknowledgement is asked for. */
  private async send(
    pipeline: ReturnType<RedisClient['pipeline']>,
  ): Promise<{ results: [Error | null, unknown][]; replicas: number | undefined }> {
    if (this.ack !== undefined) pipeline.call('WAIT', this.ack.replicas, this.ack.timeoutMs)
    const results = await execOnSlot(this.redis, pipeline)
    if (this.ack === undefined) return { results, replicas: undefined }
    const [waitError, replicas] = results.pop() ?? [new Error('no WAIT reply')]
    if (waitError) throw waitError
    return { results, replicas: Number(replicas) }
  }

  /** The script's source (EVAL) after NOSCRIPT: a restarted node, or a replica promoted since the preload. */
  private async evalOne(call: BatchedCall): Promise<Replicated<unknown>> {
    const pipeline = this.redis.pipeline()
    pipeline.eval(call.script.lua, call.keys.length, ...call.keys, ...call.args)
    const { results, replicas } = await this.send(pipeline)
    const [error, reply] = results[0] ?? [new Error('no reply in the pipeline')]
    if (error) throw error
    return { reply, replicas }
  }
}

/**
 * Loads every script into Redis once at startup (cheaper first calls; NOSCRIPT is still handled), on every
 * master of a cluster: SCRIPT LOAD is keyless, so the cluster client would send it to one node only.
 */
export async function preloadScripts(redis: RedisClient): Promise<void> {
  const nodes: Redis[] | RedisClient[] = redis instanceof Cluster ? redis.nodes('master') : [redis]
  await Promise.all(
    nodes.flatMap((node) => [...SCRIPTS.values()].map((script) => node.script('LOAD', script.lua))),
  )
}

/** The negative return codes of the scripts (their headers list which each returns), in this one place. */
export const SCRIPT_CODES = {
  [-1]: 'notLoaded',
  [-2]: 'alreadyRequested',
  [-3]: 'soldOut',
  [-4]: 'notStarted',
  [-5]: 'ended',
  [-6]: 'paused',
  [-7]: 'prequeued',
  [-8]: 'notShuffled',
} as const

type ScriptRefusal = (typeof SCRIPT_CODES)[keyof typeof SCRIPT_CODES]

/**
 * A reply `[code, ...rest]` read as a value: `{ code }` for a code ≥ 0 (success, e.g. a position), or the
 * refusal a negative code stands for. Any other reply is a contract break and throws.
 */
export function replyCode(name: string, reply: unknown): number | ScriptRefusal {
  const code = replyInteger(name, reply, 0)
  if (code >= 0) return code
  if (code in SCRIPT_CODES) return SCRIPT_CODES[code as keyof typeof SCRIPT_CODES]
  throw new Error(`script ${name} returned the unknown code ${code}`)
}

/** Element `index` of a script's array reply as an integer (a contract break throws). */
export function replyInteger(name: string, reply: unknown, index: number): number {
  const value = replyList(name, reply)[index]
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new Error(`script ${name}: reply element ${index} is not an integer`)
  }
  return value
}

/** Element `index` of a script's array reply as a string (a contract break throws). */
export function replyString(name: string, reply: unknown, index: number): string {
  const value = replyList(name, reply)[index]
  if (typeof value !== 'string') throw new Error(`script ${name}: reply element ${index} is not a string`)
  return value
}

/** A script's array reply (a contract break throws). */
export function replyList(name: string, reply: unknown): unknown[] {
  if (!Array.isArray(reply)) throw new Error(`script ${name}: the reply is not an array`)
  return reply
}

/** A script's reply of strings (e.g. `{ userId, record, ... }` pairs). */
export function replyStrings(name: string, reply: unknown): string[] {
  return replyList(name, reply).map((_, i) => replyString(name, reply, i))
}
