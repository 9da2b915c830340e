/**
 * Closed-loop load generator (a child process): autocannon with a fixed number of keep-alive connections,
 * each sending its next request as soon as the previous one is answered. Every request is a different
 * user: the JWTs are signed before the run starts and rotated per request.
 */
import { createRequire } from 'node:module'
import { signUserToken } from '../../src/auth/tokens.ts'
import {
  arrivals,
  type LoadJob,
  type LoadResult,
  nowMs,
  type ParentMessage,
  reportRun,
  sendToParent,
  summarize,
} from './load-protocol.ts'

interface AutocannonRequest {
  method: string
  path: string
  headers?: Record<string, string>
  setupRequest?: (request: AutocannonRequest, context: RequestContext) => AutocannonRequest
  onResponse?: (status: number, body: string, context: RequestContext) => void
}

interface AutocannonOptions {
  url: string
  connections: number
  pipelining: number
  amount: number
  timeout: number
  requests: AutocannonRequest[]
}

interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void
  on(event: 'reqError', listener: (error: Error) => void): void
  stop(): void
}

interface AutocannonSummary {
  errors: number
  timeouts: number
}

type Autocannon = (
  options: AutocannonOptions,
  done: (error: Error | null, result: AutocannonSummary) => void,
) => AutocannonInstance

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

const send = sendToParent

async function prepare(job: LoadJob) {
  const order = arrivals(job.users, job.repeatRatio, job.seed)
  const tokens = new Array<string>(job.users)
  for (let user = 0; user < job.users; user++) {
    tokens[user] = `Bearer ${signUserToken(job.jwtSecret, `${job.userPrefix}${user}`, 3_600)}`
  }
  return { order, tokens }
}

interface RequestContext {
  user?: number
  sentAtMs?: number
  /** A real request was built on this connection and has not been answered yet. */
  pending?: boolean
  /** The request built is a filler (see below), not a user's. */
  filler?: boolean
}

function run(job: LoadJob, order: Int32Array, tokens: string[]): Promise<LoadResult> {
  const cpuStart = process.cpuUsage()
  const latencies: number[] = []
  const statusCounts: Record<string, number> = {}
  const accepted: LoadResult['accepted'] = { users: [], positions: [], sentAtMs: [], statuses: [] }
  const soldOutUsers: string[] = []
  const seen = new Uint8Array(job.users)
  let distinctUsers = 0
  let repeatsSent = 0
  let next = 0
  // Users whose request was built but never sent (autocannon builds one per connection up front).
  const unsent: number[] = []
  let outstanding = 0
  let completed = 0
  let firstSendAtMs = 0
  let lastResponseAtMs = 0
  let cutByDuration = false
  let deadlinePassed = false
  let lastWasFiller = false
  let stopping = false
  let instance: AutocannonInstance | undefined

  const finishIfDone = () => {
    if (!stopping && outstanding === 0 && (deadlinePassed || (next >= order.length && unsent.length === 0))) {
      stopping = true
      instance?.stop()
    }
  }

  /**
   * Each request is the next user's. Once every user has asked (or the duration passed), connections get
   * a filler (GET /healthz, not counted) until the last real requests in flight are answered: the run
   * never cuts a request off, so every user sent has a known answer.
   */
  const setupRequest = (request: AutocannonRequest, context: RequestContext): AutocannonRequest => {
    if (context.pending) {
      // The previous build on this connection was never sent: its user goes again.
      context.pending = false
      outstanding--
      unsent.push(context.user!)
    }
    if (deadlinePassed || (next >= order.length && unsent.length === 0)) {
      context.filler = true
      return { ...request, method: 'GET', path: '/healthz', headers: {} }
    }
    const user = unsent.length > 0 ? unsent.pop()! : order[next++]!
    context.filler = false
    context.pending = true
    context.user = user
    context.sentAtMs = nowMs()
    outstanding++
    request.method = 'POST'
    request.path = job.path
    request.headers = { authorization: tokens[user]! }
    return request
  }

  const onResponse = (status: number, body: string, context: RequestContext) => {
    lastWasFiller = context.filler === true
    if (context.filler) return
    context.pending = false
    outstanding--
    const user = context.user!
    const userId = `${job.userPrefix}${user}`
    if (seen[user] === 0) {
      seen[user] = 1
      distinctUsers++
    } else repeatsSent++
    if (job.collectAccepted && status >= 200 && status < 300) {
      const answer = JSON.parse(body) as { position?: number; status?: string }
      accepted.users.push(userId)
      accepted.positions.push(answer.position ?? 0)
      accepted.sentAtMs.push(context.sentAtMs ?? 0)
      accepted.statuses.push(answer.status ?? '')
    } else if (job.collectAccepted && status === 410) soldOutUsers.push(userId)
  }

  return new Promise((resolve, reject) => {
    firstSendAtMs = nowMs()
    instance = autocannon(
      {
        url: job.baseUrl,
        connections: Math.min(job.connections, Math.max(1, order.length)),
        pipelining: 1,
        // Stopped by finishIfDone; the amount is only a backstop.
        amount: order.length * 10 + job.connections * 1_000,
        timeout: 30,
        requests: [{ method: 'POST', path: job.path, setupRequest, onResponse }],
      },
      (error, summary) => {
        clearTimeout(timer)
        clearInterval(progress)
        if (error) return reject(error)
        const elapsedSec = Math.max((lastResponseAtMs - firstSendAtMs) / 1000, 1e-6)
        const cpu = process.cpuUsage(cpuStart)
        resolve({
          kind: 'closed',
          sent: completed + summary.errors + summary.timeouts,
          completed,
          errors: summary.errors + summary.timeouts,
          statusCounts,
          firstSendAtMs,
          lastResponseAtMs,
          rps: completed / elapsedSec,
          latency: summarize(latencies),
          accepted,
          soldOutUsers,
          distinctUsers,
          repeatsSent,
          cutByDuration,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
        })
      },
    )
    instance.on('response', (_client, status, _bytes, ms) => {
      // onResponse (above) ran just before for the same answer and said whether it was a filler.
      if (lastWasFiller) return
      completed++
      lastResponseAtMs = nowMs()
      latencies.push(ms)
      const key = String(status)
      statusCounts[key] = (statusCounts[key] ?? 0) + 1
      finishIfDone()
    })
    const timer = setTimeout(() => {
      if (next < order.length || unsent.length > 0) cutByDuration = true
      deadlinePassed = true
      finishIfDone()
    }, job.durationSec * 1000)
    const progress = setInterval(
      () => send({ type: 'progress', sent: completed, completed, statusCounts: { ...statusCounts } }),
      500,
    )
  })
}

let prepared: { job: LoadJob; order: Int32Array; tokens: string[] } | undefined

process.on('message', (message: ParentMessage) => {
  if (message.type === 'job') {
    prepare(message.job).then(
      ({ order, tokens }) => {
        prepared = { job: message.job, order, tokens }
        send({ type: 'ready' })
      },
      (error: Error) => send({ type: 'failed', message: error.message }),
    )
  } else if (message.type === 'go' && prepared) {
    const { job, order, tokens } = prepared
    reportRun(run(job, order, tokens))
  }
})
