import type { Logger } from '../core/context.ts'

export interface RetryOptions {
  logger: Logger
  /** The warning logged on the first failure and every `logEvery` failures after it. */
  warning: string
  /** Fields of that warning (the attempt number and error are added). */
  fields?: Record<string, unknown>
  logEvery?: number
  /** Once aborted, the next failure is thrown instead of retried, and a backoff in progress ends. */
  signal?: AbortSignal
  /** Whether a failure is worth another attempt (default: every one); one that is not is thrown at once. */
  retryable?: (error: unknown) => boolean
  /** An attempt that ran this long before failing was healthy: the backoff starts over. */
  resetAfterMs?: number
}

/**
 * Runs `work` until it succeeds, backing off between attempts (100 ms doubling to 2 s): the one retry loop
 * of the workers, for a dependency that is away (Redis, Postgres, Kafka) and will come back.
 */
export async function retry<T>(work: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { logger, signal, logEvery = 20 } = options
  for (let attempt = 0, failures = 0; ; attempt++, failures++) {
    const startedAt = Date.now()
    try {
      return await work(attempt)
    } catch (error) {
      if (signal?.aborted || !(options.retryable?.(error) ?? true)) throw error
      if (options.resetAfterMs !== undefined && Date.now() - startedAt > options.resetAfterMs) failures = 0
      if (failures % logEvery === 0) logger.warn({ ...options.fields, err: error, attempt }, options.warning)
    }
    await pause(backoffMs(failures), signal)
  }
}

/** Sleeps `ms`, or less when `signal` aborts (never rejects). */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done)
  })
}

/** Capped exponential backoff: 100 ms, 200 ms, ... up to 2 s. */
export function backoffMs(attempt: number): number {
  return Math.min(100 * 2 ** Math.min(attempt, 5), 2_000)
}
