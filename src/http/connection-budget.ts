import { readFileSync } from 'node:fs'
import type { Config, EventStreamLimits } from '../config/config.ts'
import { StartupError } from '../config/config.ts'
import { AppError } from '../domain/errors.ts'

/**
 * A refusal because this process is at its connection or stream budget (503 with Retry-After): load shed on
 * purpose, so it is not logged as a failure.
 */
export class CapacityRefusal extends AppError {
  constructor(detail: string, retryAfterSeconds: number) {
    super('UNAVAILABLE', detail, { retryAfterSeconds })
  }
}

/** Why the server ended an event stream, sent to the client in a last `closed` event. */
export type StreamCloseReason = 'superseded' | 'max-age'

export interface ClosableStream {
  close(reason: StreamCloseReason): void
}

/**
 * Counts the open event streams of one process: at most `maxPerUser` per user (a new one closes that user's
 * oldest, so a new tab works) and `maxTotal` in all (beyond it, a refusal).
 */
export class EventStreamBudget {
  readonly limits: EventStreamLimits
  #open = 0
  readonly #byOwner = new Map<string, Set<ClosableStream>>()

  constructor(limits: EventStreamLimits) {
    this.limits = limits
  }

  get open(): number {
    return this.#open
  }

  /** Counts `stream` in, or throws `CapacityRefusal`; the returned function counts it out (once). */
  admit(stream: ClosableStream, owner?: string): () => void {
    const mine = owner === undefined ? undefined : this.#byOwner.get(owner)
    const oldest =
      mine !== undefined && mine.size >= this.limits.maxPerUser ? mine.values().next().value : undefined
    // Superseding keeps the total as it is, so only a stream that adds one can be refused.
    if (oldest !== undefined) oldest.close('superseded')
    else if (this.#open >= this.limits.maxTotal)
      throw new CapacityRefusal('too many event streams are open on this server, try again shortly', 5)
    this.#open += 1
    if (owner !== undefined) {
      const set = this.#byOwner.get(owner) ?? new Set()
      set.add(stream)
      this.#byOwner.set(owner, set)
    }
    let counted = true
    return () => {
      if (!counted) return
      counted = false
      this.#open -= 1
      const set = owner === undefined ? undefined : this.#byOwner.get(owner)
      set?.delete(stream)
      if (owner !== undefined && set?.size === 0) this.#byOwner.delete(owner)
    }
  }
}

/** Descriptors kept for what is not a client connection: the runtime and files. */
const RESERVED_FOR_FILES = 64
/** Commands, subscriber and workers' blocking connections, per Redis node. */
const REDIS_CONNECTIONS_PER_NODE = 8
const KAFKA_CONNECTIONS_PER_BROKER = 4

/** Descriptors the process needs besides client connections. */
export function descriptorReserve(config: Config): number {
  const redisNodes = Math.max(1, config.redisClusterNodes.length)
  return (
    RESERVED_FOR_FILES +
    // The API's Postgres pool (plugins/postgres.ts, DATABASE_POOL_SIZE).
    config.databasePoolSize +
    REDIS_CONNECTIONS_PER_NODE * redisNodes +
    KAFKA_CONNECTIONS_PER_BROKER * config.kafkaBrokers.length
  )
}

/** The soft limit on open files (`ulimit -n`) from /proc/self/limits; undefined where there is none. */
export function openFileLimit(): number | undefined {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8')
    const soft = /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1]
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft)
  } catch {
    return undefined
  }
}

/**
 * The connection cap this process can hold: HTTP_MAX_CONNECTIONS when it fits in the descriptor limit with the
 * reserve (past the limit accept() fails and every client, Redis and Postgres are cut off without an answer).
 * A default that does not fit is lowered to what fits, so `npm start` works under a small `ulimit -n`; a value
 * set explicitly that does not fit refuses to start with one line.
 */
export function connectionCap(config: Config, limit = openFileLimit()): number {
  const wanted = config.http.maxConnections
  if (limit === undefined) return wanted
  const reserve = descriptorReserve(config)
  const fits = Math.max(0, limit - reserve)
  if (wanted <= fits) return wanted
  if (!config.http.maxConnectionsSet && fits >= MIN_CONNECTIONS) return fits
  throw new StartupError(
    'HTTP_MAX_CONNECTIONS',
    `HTTP_MAX_CONNECTIONS=${wanted} plus ${reserve} descriptors for Redis, Postgres and files needs ${wanted + reserve} open files, but ulimit -n is ${limit}: lower HTTP_MAX_CONNECTIONS (at most ${fits}) or raise ulimit -n`,
  )
}

/** Below this many client connections a process is not worth starting. */
const MIN_CONNECTIONS = 64
