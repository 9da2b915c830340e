/** Command-line parsing shared by `npm run bench` and `npm run demo`: node:util parseArgs, one-line errors. */
import { type ParseArgsOptionDescriptor, parseArgs } from 'node:util'

/** A bad command line: the program prints the message on one line and exits with status 2. */
export class UsageError extends Error {}

export type OptionSpec = Record<string, ParseArgsOptionDescriptor>

export function parseCommandLine(
  argv: string[],
  options: OptionSpec,
): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false })
    return values as Record<string, string | boolean | undefined>
  } catch (error) {
    const code = (error as { code?: string }).code
    const message = (error as Error).message
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const name = /'([^']+)'/.exec(message)?.[1] ?? message
      throw new UsageError(`unknown option ${name}`)
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      const value = /'([^']+)'/.exec(message)?.[1] ?? ''
      throw new UsageError(`unexpected argument "${value}" (options start with --)`)
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      throw new UsageError(
        message.split('\n')[0]!.replace(/^Option '(--[^ ']+)[^']*'.*argument missing.*$/, '$1 needs a value'),
      )
    }
    throw new UsageError(message.split('\n')[0]!)
  }
}

/** A whole number within [min, max] (underscores allowed: 20_000), or `fallback` when the option is absent. */
export function integerOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = values[name]
  if (raw === undefined || typeof raw === 'boolean') return fallback
  const text = raw.replaceAll('_', '')
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got "${raw}"`)
  const value = Number(text)
  if (value < min || value > max)
    throw new UsageError(`--${name} must be between ${min} and ${max}, got ${value}`)
  return value
}

export function numberOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = values[name]
  if (raw === undefined || typeof raw === 'boolean') return fallback
  const value = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(value))
    throw new UsageError(`--${name} must be a number, got "${raw}"`)
  if (value < min || value > max)
    throw new UsageError(`--${name} must be between ${min} and ${max}, got ${value}`)
  return value
}

export function stringOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
): string | undefined {
  const raw = values[name]
  return typeof raw === 'string' ? raw : undefined
}

/** Runs `main`; a UsageError ends the process with one line on stderr and status 2. */
export function runMain(program: string, main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`${program}: ${error.message} (see --help)`)
      process.exit(2)
    }
    console.error(`${program}: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  })
}
