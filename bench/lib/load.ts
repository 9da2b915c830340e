/** Runs a load job in the load generator's child process (load-child.ts), for the bench and the demo. */
import { type ChildProcess, fork } from 'node:child_process'
import type { ChildMessage, LoadJob, LoadResult, ParentMessage } from './load-protocol.ts'

const CHILD = new URL('./load-child.ts', import.meta.url)

export type Progress = Omit<Extract<ChildMessage, { type: 'progress' }>, 'type'>

/**
 * A load run in two steps: `prepare` forks the child and waits until it has signed its tokens (outside the
 * measured window), `go` starts the load and resolves with the result.
 */
export class LoadRun {
  private readonly child: ChildProcess
  private readonly ready: Promise<void>
  private readonly result: Promise<LoadResult>
  /** Requests the run will send (every user once, some twice), known once prepared. */
  planned = 0

  private constructor(job: LoadJob, onProgress?: (progress: Progress) => void) {
    this.child = fork(CHILD, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let markReady: () => void = () => {}
    let failReady: (error: Error) => void = () => {}
    this.ready = new Promise((resolve, reject) => {
      markReady = resolve
      failReady = reject
    })
    this.result = new Promise((resolve, reject) => {
      let settled = false
      const fail = (error: Error) => {
        if (settled) return
        settled = true
        failReady(error)
        reject(error)
      }
      this.child.on('message', (message: ChildMessage) => {
        if (message.type === 'ready') {
          this.planned = message.planned
          markReady()
        } else if (message.type === 'progress') onProgress?.(message)
        else if (message.type === 'done') {
          settled = true
          resolve(message.result)
        } else if (message.type === 'failed') fail(new Error(`load generator: ${message.message}`))
      })
      // 'close' comes after the IPC channel closed, so a last 'done' message has been delivered by then.
      this.child.on('close', (code, signal) =>
        fail(new Error(`load generator exited early (${signal ?? `code ${code}`})`)),
      )
      this.child.on('error', fail)
    })
    // A failure is reported through `ready` or `go`; avoid an unhandled rejection in between.
    this.result.catch(() => {})
    this.post({ type: 'job', job })
  }

  static async prepare(job: LoadJob, onProgress?: (progress: Progress) => void): Promise<LoadRun> {
    const run = new LoadRun(job, onProgress)
    await run.ready
    return run
  }

  go(): Promise<LoadResult> {
    this.post({ type: 'go' })
    return this.result
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL')
  }

  private post(message: ParentMessage): void {
    this.child.send(message)
  }
}

/**
 * About `seconds` of closed-loop requests against a coupon of one unit (mostly the sold-out path): a flash
 * sale hits a server that has been running, so a fresh one gets this first.
 */
export async function warmUp(
  job: Pick<LoadJob, 'baseUrl' | 'jwtSecret' | 'userPrefix' | 'connections'>,
  couponId: number,
  seconds: number,
): Promise<void> {
  const run = await LoadRun.prepare({
    ...job,
    kind: 'closed',
    path: `/coupons/${couponId}/issuance`,
    users: 4_000,
    repeatRatio: 0,
    seed: 1,
    durationSec: seconds,
    rate: 0,
    collectAccepted: false,
  })
  await run.go()
}
