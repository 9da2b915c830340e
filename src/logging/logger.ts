import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify'
import { LogController } from 'fastify'
import type { DestinationStream, Level } from 'pino'
import pretty from 'pino-pretty'
import type { Config, LogFormat, LogLevel, RequestLog } from '../config/config.ts'

/** Where log lines go and whether a person is watching it (a terminal). */
export interface LogOutput {
  isTTY?: boolean
}

/** Readable lines for a person at a terminal, JSON for everything else (files, pipes, log shippers). */
export function isPretty(format: LogFormat, output: LogOutput = process.stdout): boolean {
  return format === 'pretty' || (format === 'auto' && output.isTTY === true)
}

/**
 * The pino options of a server or worker process: its level and, for pretty output, a pino-pretty stream.
 * The stream is synchronous so that a line written just before the process exits is not lost and the
 * admin-token banner (stderr) lands between the lines around it.
 */
export function loggerOptions(
  config: Pick<Config, 'logLevel' | 'logFormat'>,
  output: LogOutput = process.stdout,
): { level: LogLevel; stream?: DestinationStream } {
  if (!isPretty(config.logFormat, output)) return { level: config.logLevel }
  const stream = pretty({
    colorize: output.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    sync: true,
    destination: 1,
  })
  return { level: config.logLevel, stream }
}

const SEVERITY: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
}

/**
 * all: every request (Fastify's "incoming request" and "request completed" lines, info); failures: requests
 * answered 5xx (a dependency away, a bug: warn and error); errors: only unhandled errors, so a Redis or
 * Postgres outage does not write one line per refused request (/metrics counts them).
 */
const REQUEST_LEVELS: Record<RequestLog, Level> = { all: 'info', failures: 'warn', errors: 'error' }

/** The request log's level: LOG_REQUESTS, never below LOG_LEVEL (the floor of every line). */
export function requestLogLevel(config: Pick<Config, 'logLevel' | 'requestLog'>): LogLevel {
  const wanted = REQUEST_LEVELS[config.requestLog]
  return SEVERITY[wanted] >= SEVERITY[config.logLevel] ? wanted : config.logLevel
}

/**
 * Fastify's request-logging options for LOG_REQUESTS. Below `all`, no child logger per request (its creation
 * showed in profiles of the admission): every request shares one child at the request level, and the few
 * request lines carry `reqId` themselves. The process's own lines (startup, workers, Redis) keep LOG_LEVEL.
 */
export function requestLogging(
  config: Pick<Config, 'logLevel' | 'requestLog'>,
): Pick<FastifyServerOptions, 'logController' | 'childLoggerFactory'> {
  const level = requestLogLevel(config)
  if (config.requestLog === 'all') {
    return {
      logController: new LogController({ disableRequestLogging: false }),
      childLoggerFactory: (logger, bindings, options) => logger.child(bindings, { ...options, level }),
    }
  }
  // One slot: every request of the app comes with the same parent logger, so this is one comparison.
  let parent: FastifyBaseLogger | undefined
  let shared: FastifyBaseLogger | undefined
  return {
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (logger) => {
      if (logger !== parent || shared === undefined) {
        parent = logger
        shared = logger.child({}, { level })
      }
      return shared
    },
  }
}

/**
 * Logs the generated admin token once (one warn line, in every format) and, when a person reads the logs
 * (pretty lines) and stderr is a terminal, also shows it in a banner there, so it is not lost among the
 * startup lines.
 */
export function announceGeneratedAdminToken(
  log: FastifyBaseLogger,
  config: Pick<Config, 'adminToken' | 'logFormat'>,
  terminal: { stdout: LogOutput; stderr: LogOutput & { write(text: string): unknown } } = process,
): void {
  const { adminToken: token } = config
  log.warn(`ADMIN_TOKEN was not set; generated admin token for this run: ${token}`)
  if (!isPretty(config.logFormat, terminal.stdout) || terminal.stderr.isTTY !== true) return
  const lines = ['ADMIN_TOKEN was not set. Admin token for this run:', '', `  ${token}`]
  const width = Math.max(...lines.map((line) => line.length)) + 2
  const bold = (text: string) => `\u001b[1;33m${text}\u001b[0m`
  terminal.stderr.write(
    `\n${bold(`┌${'─'.repeat(width)}┐`)}\n${lines
      .map((line) => `${bold('│')} ${line.padEnd(width - 1)}${bold('│')}`)
      .join('\n')}\n${bold(`└${'─'.repeat(width)}┘`)}\n\n`,
  )
}
