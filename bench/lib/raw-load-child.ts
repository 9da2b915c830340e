/**
 * The benchmark's default load generator (a child process) on plain keep-alive sockets (raw-http.ts), with
 * every request pre-built before the run (a different user's JWT each), so it spends as little CPU per
 * request as possible on a machine it shares with the server.
 *
 * - closed loop: `connections` sockets, each sending its next request as soon as the previous is answered,
 *   until every user has asked or the duration passed (requests in flight then are still awaited).
 * - open loop: requests arrive at a fixed rate whatever the server's answers are doing; latency is measured
 *   from each request's *scheduled* arrival, so a server (or client) falling behind shows up as latency
 *   instead of silently lowering the offered load (no coordinated omission).
 */
import { setTimeout as sleep } from 'node:timers/promises'
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
import { postRequest, RawPool } from './raw-http.ts'

const send = sendToParent

async function run(job: LoadJob, order: Int32Array, requests: Buffer[]): Promise<LoadResult> {
  const open = job.kind === 'open'
  const cpuStart = process.cpuUsage()
  const url = new URL(job.baseUrl)
  const pool = new RawPool(url.hostname, Number(url.port), job.connections)
  const total = order.length
  const latencies = new Float64Array(total)
  const lags = new Float64Array(total)
  const statusCounts: Record<string, number> = {}
  const accepted: LoadResult['accepted'] = { users: [], positions: [], sentAtMs: [], statuses: [] }
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
    () => send({ type: 'progress', sent, completed, statusCounts: { ...statusCounts } }),
    500,
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
        settle()
        next?.()
        return
      }
      const doneAt = nowMs()
      lastResponseAtMs = doneAt
      latencies[index] = doneAt - scheduledAt
      completed++
      const key = String(status)
      statusCounts[key] = (statusCounts[key] ?? 0) + 1
      if (job.collectAccepted && status >= 200 && status < 300) {
        const answer = JSON.parse(body) as { position?: number; status?: string }
        accepted.users.push(`${job.userPrefix}${user}`)
        accepted.positions.push(answer.position ?? 0)
        accepted.sentAtMs.push(sentAtMs)
        accepted.statuses.push(answer.status ?? '')
      } else if (job.collectAccepted && status === 410) soldOutUsers.push(`${job.userPrefix}${user}`)
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
    await new Promise<void>((resolve) => {
      let running = Math.min(job.connections, total)
      const loop = () => {
        if (sent < total && nowMs() < deadline) fire(sent++, loop)
        else {
          if (sent < total) cutByDuration = true
          if (--running === 0) resolve()
        }
      }
      if (running === 0) resolve()
      for (let i = 0; i < Math.min(job.connections, total); i++) loop()
    })
  }
  stopped = true
  settle()
  await allAnswered
  clearInterval(progress)
  pool.close()
  const cpu = process.cpuUsage(cpuStart)
  const measured = Array.from(latencies.subarray(0, sent)).filter((value) => !Number.isNaN(value))
  const firstSendAtMs = start
  const elapsedSec = Math.max((lastResponseAtMs - firstSendAtMs) / 1000, 1e-6)
  return {
    kind: job.kind,
    sent,
    completed,
    errors,
    statusCounts,
    firstSendAtMs,
    lastResponseAtMs,
    rps: completed / elapsedSec,
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
    const order = arrivals(job.users, job.repeatRatio, job.seed)
    const requests = new Array<Buffer>(job.users)
    for (let user = 0; user < job.users; user++) {
      const token = signUserToken(job.jwtSecret, `${job.userPrefix}${user}`, 3_600)
      requests[user] = postRequest(url.hostname, Number(url.port), job.path, `Bearer ${token}`)
    }
    prepared = { job, order, requests }
    send({ type: 'ready' })
  } else if (message.type === 'go' && prepared) {
    const { job, order, requests } = prepared
    reportRun(run(job, order, requests))
  }
})
