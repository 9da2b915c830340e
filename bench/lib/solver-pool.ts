/**
 * A bot farm's CPUs: `cores` worker threads solving ALTCHA challenges at full speed with altcha-lib's solver
 * (bench/lib/solver-worker.ts), one challenge per thread at a time, the rest queued.
 */
import { Worker } from 'node:worker_threads'
import type { Challenge } from 'altcha-lib/v1/types'

interface Job {
  challenge: Challenge
  resolve: (number: number | null) => void
}

export class SolverPool {
  /** Challenges solved so far. */
  solved = 0
  private readonly idle: Worker[] = []
  private readonly workers: Worker[] = []
  private readonly queue: Job[] = []

  constructor(cores: number) {
    for (let i = 0; i < cores; i++) {
      const worker = new Worker(new URL('./solver-worker.ts', import.meta.url))
      this.workers.push(worker)
      this.idle.push(worker)
    }
  }

  solve(challenge: Challenge): Promise<number | null> {
    return new Promise((resolve) => {
      this.queue.push({ challenge, resolve })
      this.next()
    })
  }

  private next(): void {
    const worker = this.idle.pop()
    if (worker === undefined) return
    const job = this.queue.shift()
    if (job === undefined) {
      this.idle.push(worker)
      return
    }
    worker.once('message', (number: number | null) => {
      this.solved++
      job.resolve(number)
      this.idle.push(worker)
      this.next()
    })
    worker.postMessage(job.challenge)
  }

  /** Challenges still queued resolve as unsolved (those being solved finish). */
  dropQueued(): void {
    for (const job of this.queue.splice(0)) job.resolve(null)
  }

  async close(): Promise<void> {
    this.dropQueued()
    await Promise.all(this.workers.map((worker) => worker.terminate()))
  }
}
