import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { eventually } from './infra.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

export interface Child {
  process: ChildProcess
  output(): string
  /** Resolves with the first output line matching `pattern` (rejects if the process exits first). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>
  kill(signal?: NodeJS.Signals): Promise<void>
}

/**
 * Runs a TypeScript entry point (relative to the repo root) on this Node, capturing its output; with
 * `openFiles`, under that `ulimit -n` (soft and hard, so Node cannot raise it).
 */
export function spawnNode(
  entry: string,
  env: Record<string, string>,
  args: string[] = [],
  options: { openFiles?: number } = {},
): Child {
  const [command, commandArgs] =
    options.openFiles === undefined
      ? [process.execPath, [entry, ...args]]
      : ['bash', ['-c', `ulimit -n ${options.openFiles} && exec "$0" "$@"`, process.execPath, entry, ...args]]
  const child = spawn(command, commandArgs, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const listeners = new Set<() => void>()
  const collect = (chunk: Buffer) => {
    output += chunk.toString()
    for (const listener of listeners) listener()
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  return {
    process: child,
    output: () => output,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = output.split('\n').find((candidate) => pattern.test(candidate))
          if (line !== undefined) {
            cleanup()
            resolve(line)
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`timed out waiting for ${pattern}; output:\n${output}`))
        }, timeoutMs)
        const onExit = () => {
          check()
          cleanup()
          reject(new Error(`process exited before ${pattern}; output:\n${output}`))
        }
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
          child.off('exit', onExit)
        }
        listeners.add(check)
        child.on('exit', onExit)
        check()
      })
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal)
        await exited
      }
    },
  }
}

/** Waits until the API process on `port` answers `GET /readyz` with 200. */
export async function waitUntilReady(port: number, timeoutMs = 30_000): Promise<void> {
  await eventually(
    () =>
      fetch(`http://127.0.0.1:${port}/readyz`).then(
        async (response) => {
          await response.body?.cancel()
          return response.ok
        },
        () => false,
      ),
    `API on ${port} ready`,
    timeoutMs,
  )
}
