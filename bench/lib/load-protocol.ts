/**
 * What the load generator (load-child.ts) is asked to do and what it answers. It runs as a separate Node
 * process, so it never shares an event loop with the parent's pollers, and talks to the parent over IPC.
 */

export interface LoadJob {
  kind: 'closed' | 'open'
  /** e.g. http://127.0.0.1:40123 */
  baseUrl: string
  /** e.g. /coupons/12/issuance */
  path: string
  /** Every request carries `Authorization: Bearer <JWT>` of its user, signed with this secret. */
  jwtSecret: string
  /** User ids are `${userPrefix}${index}`. */
  userPrefix: string
  /** Distinct users. */
  users: number
  /** Fraction of the users who press twice (their second press follows shortly after the first). */
  repeatRatio: number
  seed: number
  /** Keep-alive connections (closed: in flight at once; open: the pool the arrivals are spread over). */
  connections: number
  /** closed: the run stops after this many seconds even if users are left; open: unused (users / rate). */
  durationSec: number
  /** open: arrivals per second (constant spacing). */
  rate: number
  /**
   * open: stop sending new arrivals once more than `rate * maxBacklogSec` requests are unanswered (the
   * server cannot take the rate; waiting for an ever-growing queue would only measure the queue).
   */
  maxBacklogSec?: number
  /** Collect per accepted user its position and send time (for the FCFS and request-to-row checks). */
  collectAccepted: boolean
  /** How often progress is reported (default 500 ms). */
  progressMs?: number
}

export interface LatencySummary {
  count: number
  mean: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
}

export interface LoadResult {
  kind: LoadJob['kind']
  /** Requests sent / answered (any status) / failed without an answer. */
  sent: number
  completed: number
  errors: number
  /** HTTP status -> count. */
  statusCounts: Record<string, number>
  /** Wall clock (epoch ms) of the first request sent and of the last answer received. */
  firstSendAtMs: number
  lastResponseAtMs: number
  /** completed / seconds between the first send and the last answer. */
  rps: number
  /** ms; closed loop: send -> answer. Open loop: scheduled arrival -> answer (queueing in the client counts). */
  latency: LatencySummary
  /** open: the arrival rate asked for and the send rate reached. */
  offeredRate?: number
  achievedSendRate?: number
  /** open: how late sends left after their scheduled arrival (client saturation), ms. */
  sendLag?: LatencySummary
  /** Users whose answer was 2xx, with the position answered, when the request was sent and answered (epoch ms). */
  accepted: {
    users: string[]
    positions: number[]
    sentAtMs: number[]
    answeredAtMs: number[]
    statuses: string[]
  }
  /** Users answered 410 (they must hold no row). */
  soldOutUsers: string[]
  /** Distinct users that sent at least one request, and second presses sent. */
  distinctUsers: number
  repeatsSent: number
  /** true when the closed-loop run was cut by its duration before every user had asked. */
  cutByDuration: boolean
  /** open: arrivals planned, and the second at which sending stopped because the backlog grew too long. */
  planned?: number
  saturatedAtSec?: number
  /** CPU time the generator process used during the run (it exits before the phase's CPU is read). */
  cpuSeconds: number
}

export type ParentMessage = { type: 'job'; job: LoadJob } | { type: 'go' }
export type ChildMessage =
  | { type: 'ready'; planned: number }
  | {
      type: 'progress'
      sent: number
      completed: number
      errors: number
      statusCounts: Record<string, number>
    }
  | { type: 'done'; result: LoadResult }
  | { type: 'failed'; message: string }

/** A small deterministic PRNG (mulberry32), so a run's arrival order can be reproduced. */
export function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/**
 * The arrival order: every user once, in order, and `repeatRatio` of them a second time a little later
 * (within about 2% of the sale), as people pressing the button twice.
 */
export function arrivals(users: number, repeatRatio: number, seed: number): Int32Array {
  const rnd = random(seed)
  const gap = Math.max(10, Math.floor(users * 0.02))
  const keys: number[] = []
  const who: number[] = []
  for (let user = 0; user < users; user++) {
    keys.push(user)
    who.push(user)
    if (repeatRatio > 0 && rnd() < repeatRatio) {
      keys.push(user + 0.5 + rnd() * gap)
      who.push(user)
    }
  }
  const order = keys.map((_, index) => index).sort((a, b) => keys[a]! - keys[b]!)
  return Int32Array.from(order, (index) => who[index]!)
}

/** Percentiles of a list of millisecond values (sorted in place). */
export function summarize(values: number[] | Float64Array): LatencySummary {
  const sorted = Float64Array.from(values).sort()
  const count = sorted.length
  if (count === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 }
  const at = (q: number) => sorted[Math.min(count - 1, Math.max(0, Math.ceil(q * count) - 1))]!
  let sum = 0
  for (const value of sorted) sum += value
  return {
    count,
    mean: sum / count,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: sorted[count - 1]!,
  }
}

/** Epoch milliseconds with sub-millisecond precision (comparable across processes on one machine). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now()
}

/** Sends a message to the parent process (the load generator's); `then` runs once it is written. */
export function sendToParent(message: ChildMessage, then?: () => void): void {
  process.send?.(message, undefined, undefined, () => then?.())
}
