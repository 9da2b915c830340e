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

async function run(job: LoadJob, order: Int32Array, requests: Buffer[]): Promise<LoadResult> {
  const open = job.kind === 'open'
  const cpuStart = process.cpuUsage()
  const pool = new Pool(new URL(job.baseUrl), job.connections)
  const total = order.length
  const latencies = new Float64Array(total)
  const lags = new Float64Array(total)
  const statusCounts: Record<string, number> = {}
  const accepted: LoadResult['accepted'] = {
    users: [],
    positions: [],
    sentAtMs: [],
    answeredAtMs: [],
    statuses: [],
  }
  const soldOutUsers: string[] = []
  const seen = new Uint8Array(job.users)
  let distinctUsers = 0
  let repeatsSent = 0
  let sent = 0
  let completed = 0
  let errors = 0
  let lastResponseAtMs = 0
  let lastSendAtMs = 0
  const intervalMs = open ? 1000 / job.rate : 0
  let cutByDuration = false

  const start = nowMs() + (open ? 5 : 0)
  const progress = setInterval(
    () => sendToParent({ type: 'progress', sent, completed, errors, statusCounts: { ...statusCounts } }),
    job.progressMs ?? 500,
  )
  let finished: () => void = () => {}
  const allAnswered = new Promise<void>((resolve) => {
    finished = resolve
  })
  let stopped = false
  const settle = () => {
    if (stopped && completed + errors === sent) finished()
  }

  const fire = (index: number, next?: () => void): void => {
    const user = order[index]!
    const sentAtMs = nowMs()
    const scheduledAt = open ? start + index * intervalMs : sentAtMs
    lastSendAtMs = sentAtMs
    lags[index] = sentAtMs - scheduledAt
    if (seen[user] === 0) {
      seen[user] = 1
      distinctUsers++
    } else repeatsSent++
    pool.request(requests[user]!, (error, status, body) => {
      if (error) {
        errors++
        latencies[index] = Number.NaN
      } else {
        const doneAt = nowMs()
        lastResponseAtMs = doneAt
        latencies[index] = doneAt - scheduledAt
        completed++
        statusCounts[status] = (statusCounts[status] ?? 0) + 1
        if (job.collectAccepted && status >= 200 && status < 300) {
          const answer = JSON.parse(body) as { position?: number; status?: string }
          accepted.users.push(`${job.userPrefix}${user}`)
          accepted.positions.push(answer.position ?? 0)
          accepted.sentAtMs.push(sentAtMs)
          accepted.answeredAtMs.push(doneAt)
          accepted.statuses.push(answer.status ?? '')
        } else if (job.collectAccepted && status === 410) soldOutUsers.push(`${job.userPrefix}${user}`)
      }
      settle()
      next?.()
    })
  }

  const maxBacklog = job.maxBacklogSec === undefined ? Number.POSITIVE_INFINITY : job.rate * job.maxBacklogSec
  let saturatedAtSec: number | undefined
  if (open) {
    // A timer tick every millisecond sends every arrival that is due (Node timers are ~1 ms coarse).
    while (sent < total) {
      const due = Math.min(total, Math.floor((nowMs() - start) / intervalMs) + 1)
      while (sent < due) fire(sent++)
      if (sent - completed - errors > maxBacklog) {
        saturatedAtSec = (nowMs() - start) / 1000
        break
      }
      if (sent < total) await sleep(1)
    }
  } else {
    // Each connection sends its next user as soon as its previous answer arrived.
    const deadline = start + job.durationSec * 1000
    const lanes = Math.min(job.connections, total)
    await new Promise<void>((resolve) => {
      let running = lanes
      const loop = () => {
        if (sent < total && nowMs() < deadline) fire(sent++, loop)
        else {
          if (sent < total) cutByDuration = true
          if (--running === 0) resolve()
        }
      }
      if (running === 0) resolve()
      for (let i = 0; i < lanes; i++) loop()
    })
  }
  stopped = true
  settle()
  await allAnswered
  clearInterval(progress)
  pool.close()
  const cpu = process.cpuUsage(cpuStart)
  const measured = Array.from(latencies.subarray(0, sent)).filter((value) => !Number.isNaN(value))
  return {
    kind: job.kind,
    sent,
    completed,
    errors,
    statusCounts,
    firstSendAtMs: start,
    lastResponseAtMs,
    rps: completed / Math.max((lastResponseAtMs - start) / 1000, 1e-6),
    latency: summarize(measured),
    ...(open
      ? {
          offeredRate: job.rate,
          achievedSendRate: sent / Math.max((lastSendAtMs - start) / 1000 + intervalMs / 1000, 1e-6),
          sendLag: summarize(lags.subarray(0, sent)),
        }
      : {}),
    accepted,
    soldOutUsers,
    distinctUsers,
    repeatsSent,
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
