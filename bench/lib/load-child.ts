/**
 * The one load generator of the benchmark and the demo (a child process, see load.ts): plain HTTP/1.1
 * keep-alive sockets and requests pre-built before the run (a different user's JWT each), so it spends as
 * little CPU per request as possible on a machine it shares with the server.
 *
 * - closed loop: `connections` sockets, each sending its next request as soon as the previous is answered,
 *   until every user has asked or the duration passed (requests in flight then are still awaited).
 * - open loop: requests arrive at a fixed rate whatever the answers are doing; latency counts from each
 *   request's *scheduled* arrival, so a server (or client) falling behind shows up as latency instead of
 *   silently lowering the offered load (no coordinated omission). autocannon's `overallRate` is not used for
 *   this: it gives each connection a per-second budget of requests it still sends one after another, and
 *   times each from its write, so a slow server lowers the load and hides the wait.
 */
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { signUserToken } from '../../src/auth/tokens.ts'
import {
  arrivals,
  type LoadJob,
  type LoadResult,
  nowMs,
  type ParentMessage,
  sendToParent,
  summarize,
} from './load-protocol.ts'

type Done = (error: Error | undefined, status: number, body: string) => void

const HEADER_END = Buffer.from('\r\n\r\n')

/** One keep-alive socket; answers parsed just enough (status, content-length, body). */
class Connection {
  private socket: Socket | undefined
  private buffer: Buffer = Buffer.alloc(0)
  private done: Done | undefined
  private readonly url: URL
  private readonly onFree: (connection: Connection) => void

  constructor(url: URL, onFree: (connection: Connection) => void) {
    this.url = url
    this.onFree = onFree
  }

  send(request: Buffer, done: Done): void {
    this.done = done
    if (this.socket === undefined || this.socket.destroyed) this.open()
    this.socket!.write(request)
  }

  private open(): void {
    const socket = connect({ host: this.url.hostname, port: Number(this.url.port), noDelay: true })
    this.buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => this.receive(chunk))
    const fail = (error?: Error) => {
      if (this.socket === socket) this.socket = undefined
      const done = this.done
      this.done = undefined
      if (done) {
        done(error ?? new Error('connection closed'), 0, '')
        this.onFree(this)
      }
    }
    socket.on('error', fail)
    socket.on('close', () => fail())
    this.socket = socket
  }

  private receive(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    const headerEnd = this.buffer.indexOf(HEADER_END)
    if (headerEnd < 0) return
    const head = this.buffer.toString('latin1', 0, headerEnd)
    const match = /\r\ncontent-length:\s*(\d+)/i.exec(head)
    if (!match) {
      // Chunked answers are not expected from the routes measured; fail loudly rather than guess.
      this.socket?.destroy(new Error('answer without content-length'))
      return
    }
    const bodyEnd = headerEnd + 4 + Number(match[1])
    if (this.buffer.length < bodyEnd) return
    const body = this.buffer.toString('utf8', headerEnd + 4, bodyEnd)
    this.buffer = this.buffer.subarray(bodyEnd)
    const done = this.done
    this.done = undefined
    if (/\r\nconnection:\s*close/i.test(head)) this.socket?.end()
    done?.(undefined, Number(head.slice(9, 12)), body)
    this.onFree(this)
  }

  close(): void {
    this.socket?.destroy()
  }
}

/** `connections` sockets; requests beyond them wait in a FIFO (their wait counts as latency). */
class Pool {
  private readonly idle: Connection[] = []
  private readonly all: Connection[] = []
  private readonly waiting: [Buffer, Done][] = []

  constructor(url: URL, connections: number) {
    for (let i = 0; i < connections; i++) this.all.push(new Connection(url, (free) => this.release(free)))
    this.idle.push(...this.all)
  }

  request(buffer: Buffer, done: Done): void {
    const connection = this.idle.pop()
    if (connection) connection.send(buffer, done)
    else this.waiting.push([buffer, done])
  }

  private release(connection: Connection): void {
    const next = this.waiting.shift()
    if (next) connection.send(next[0], next[1])
    else this.idle.push(connection)
  }

  close(): void {
    for (const connection of this.all) connection.close()
  }
}

/** One run's counters and per-request records, filled as requests go out and their answers come back. */
class Tally {
  readonly start: number
  readonly intervalMs: number
  readonly latencies: Float64Array
  readonly lags: Float64Array
  readonly statusCounts: Record<string, number> = {}
  readonly accepted: LoadResult['accepted'] = {
    users: [],
    positions: [],
    sentAtMs: [],
    answeredAtMs: [],
    statuses: [],
  }
  readonly soldOutUsers: string[] = []
  readonly allAnswered: Promise<void>
  distinctUsers = 0
  repeatsSent = 0
  sent = 0
  completed = 0
  errors = 0
  lastResponseAtMs = 0
  lastSendAtMs = 0
  private readonly job: LoadJob
  private readonly order: Int32Array
  private readonly requests: Buffer[]
  private readonly pool: Pool
  private readonly seen: Uint8Array
  private stopped = false
  private finished: () => void = () => {}

  constructor(job: LoadJob, order: Int32Array, requests: Buffer[], pool: Pool) {
    this.job = job
    this.order = order
    this.requests = requests
    this.pool = pool
    this.latencies = new Float64Array(order.length)
    this.lags = new Float64Array(order.length)
    this.seen = new Uint8Array(job.users)
    this.allAnswered = new Promise<void>((resolve) => {
      this.finished = resolve
    })
    const open = job.kind === 'open'
    this.intervalMs = open ? 1000 / job.rate : 0
    this.start = nowMs() + (open ? 5 : 0)
  }

  /** Sends arrival `index` (open loop: timed from its scheduled arrival); `next` runs once it is answered. */
  fire(index: number, next?: () => void): void {
    const user = this.order[index]!
    const sentAtMs = nowMs()
    const scheduledAt = this.job.kind === 'open' ? this.start + index * this.intervalMs : sentAtMs
    this.lastSendAtMs = sentAtMs
    this.lags[index] = sentAtMs - scheduledAt
    if (this.seen[user] === 0) {
      this.seen[user] = 1
      this.distinctUsers++
    } else this.repeatsSent++
    this.pool.request(this.requests[user]!, (error, status, body) => {
      if (error) {
        this.errors++
        this.latencies[index] = Number.NaN
      } else this.answered(index, user, sentAtMs, scheduledAt, status, body)
      this.settle()
      next?.()
    })
  }

  private answered(
    index: number,
    user: number,
    sentAtMs: number,
    scheduledAt: number,
    status: number,
    body: string,
  ): void {
    const doneAt = nowMs()
    const { job, accepted } = this
    this.lastResponseAtMs = doneAt
    this.latencies[index] = doneAt - scheduledAt
    this.completed++
    this.statusCounts[status] = (this.statusCounts[status] ?? 0) + 1
    if (job.collectAccepted && status >= 200 && status < 300) {
      const answer = JSON.parse(body) as { position?: number; status?: string }
      accepted.users.push(`${job.userPrefix}${user}`)
      accepted.positions.push(answer.position ?? 0)
      accepted.sentAtMs.push(sentAtMs)
      accepted.answeredAtMs.push(doneAt)
      accepted.statuses.push(answer.status ?? '')
    } else if (job.collectAccepted && status === 410) this.soldOutUsers.push(`${job.userPrefix}${user}`)
  }

  private settle(): void {
    if (this.stopped && this.completed + this.errors === this.sent) this.finished()
  }

  /** No more sends: resolves once every request sent has its answer or error. */
  stop(): Promise<void> {
    this.stopped = true
    this.settle()
    return this.allAnswered
  }
}

/**
 * Open loop: a timer tick every millisecond sends every arrival that is due (Node timers are ~1 ms coarse).
 * Stops early when more than `maxBacklogSec` of arrivals are unanswered; returns when that happened (s).
 */
async function sendOpenLoop(tally: Tally, job: LoadJob, total: number): Promise<number | undefined> {
  const maxBacklog = job.maxBacklogSec === undefined ? Number.POSITIVE_INFINITY : job.rate * job.maxBacklogSec
  while (tally.sent < total) {
    const due = Math.min(total, Math.floor((nowMs() - tally.start) / tally.intervalMs) + 1)
    while (tally.sent < due) tally.fire(tally.sent++)
    if (tally.sent - tally.completed - tally.errors > maxBacklog) return (nowMs() - tally.start) / 1000
    if (tally.sent < total) await sleep(1)
  }
  return undefined
}

/** Closed loop: each connection sends its next user as soon as its previous answer arrived. */
async function sendClosedLoop(
  tally: Tally,
  job: LoadJob,
  total: number,
): Promise<{ cutByDuration: boolean }> {
  const deadline = tally.start + job.durationSec * 1000
  const lanes = Math.min(job.connections, total)
  let cutByDuration = false
  await new Promise<void>((resolve) => {
    let running = lanes
    const loop = () => {
      if (tally.sent < total && nowMs() < deadline) tally.fire(tally.sent++, loop)
      else {
        if (tally.sent < total) cutByDuration = true
        if (--running === 0) resolve()
      }
    }
    if (running === 0) resolve()
    for (let i = 0; i < lanes; i++) loop()
  })
  return { cutByDuration }
}

async function run(job: LoadJob, order: Int32Array, requests: Buffer[]): Promise<LoadResult> {
  const open = job.kind === 'open'
  const cpuStart = process.cpuUsage()
  const pool = new Pool(new URL(job.baseUrl), job.connections)
  const total = order.length
  const tally = new Tally(job, order, requests, pool)
  const progress = setInterval(() => {
    const { sent, completed, errors } = tally
    sendToParent({ type: 'progress', sent, completed, errors, statusCounts: { ...tally.statusCounts } })
  }, job.progressMs ?? 500)
  let saturatedAtSec: number | undefined
  let cutByDuration = false
  if (open) saturatedAtSec = await sendOpenLoop(tally, job, total)
  else ({ cutByDuration } = await sendClosedLoop(tally, job, total))
  await tally.stop()
  clearInterval(progress)
  pool.close()
  const cpu = process.cpuUsage(cpuStart)
  const { start, sent, completed, lastResponseAtMs, intervalMs } = tally
  const measured = Array.from(tally.latencies.subarray(0, sent)).filter((value) => !Number.isNaN(value))
  return {
    kind: job.kind,
    sent,
    completed,
    errors: tally.errors,
    statusCounts: tally.statusCounts,
    firstSendAtMs: start,
    lastResponseAtMs,
    rps: completed / Math.max((lastResponseAtMs - start) / 1000, 1e-6),
    latency: summarize(measured),
    ...(open
      ? {
          offeredRate: job.rate,
          achievedSendRate: sent / Math.max((tally.lastSendAtMs - start) / 1000 + intervalMs / 1000, 1e-6),
          sendLag: summarize(tally.lags.subarray(0, sent)),
        }
      : {}),
    accepted: tally.accepted,
    soldOutUsers: tally.soldOutUsers,
    distinctUsers: tally.distinctUsers,
    repeatsSent: tally.repeatsSent,
    cutByDuration,
    planned: total,
    saturatedAtSec,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  }
}

let prepared: { job: LoadJob; order: Int32Array; requests: Buffer[] } | undefined

process.on('message', (message: ParentMessage) => {
  if (message.type === 'job') {
    const job = message.job
    const url = new URL(job.baseUrl)
    const requests = new Array<Buffer>(job.users)
    for (let user = 0; user < job.users; user++) {
      const token = signUserToken(job.jwtSecret, `${job.userPrefix}${user}`, 3_600)
      requests[user] = Buffer.from(
        `POST ${job.path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\n\r\n`,
        'latin1',
      )
    }
    prepared = { job, order: arrivals(job.users, job.repeatRatio, job.seed), requests }
    sendToParent({ type: 'ready', planned: prepared.order.length })
  } else if (message.type === 'go' && prepared) {
    const { job, order, requests } = prepared
    run(job, order, requests).then(
      (result) => sendToParent({ type: 'done', result }, () => process.disconnect?.()),
      (error: Error) =>
        sendToParent({ type: 'failed', message: error.message }, () => process.disconnect?.()),
    )
  }
})
