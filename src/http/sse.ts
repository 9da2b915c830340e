import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ClosableStream, StreamCloseReason } from './connection-budget.ts'

export interface EventStream {
  send(event: string, data: unknown): void
  /** Resolves when the stream ends: the client went away, or the server closed it. */
  closed: Promise<void>
}

export interface EventStreamOptions {
  /** The user the stream belongs to: counted against SSE_MAX_PER_USER. */
  owner?: string
}

/** A client that stopped reading is dropped once this much waits for it, rather than buffered for. */
const MAX_BUFFERED_BYTES = 256 * 1024
/** How soon EventSource reconnects after an ordinary end (max age). */
const RECONNECT_MS = 2_000
/** A superseded stream's client waits this long before it comes back (and supersedes another). */
const SUPERSEDED_RECONNECT_MS = 60_000

/**
 * Takes over the response as a Server-Sent Events stream (text/event-stream), counted against the stream
 * budget (plugins/connections.ts; throws `CapacityRefusal` before anything is written when it is full).
 * A comment heartbeat every SSE_HEARTBEAT_MS keeps proxies from closing it and finds dead clients; after
 * SSE_MAX_AGE_MS it ends with a `closed` event and the client's EventSource reconnects.
 */
export function openEventStream(
  request: FastifyRequest,
  reply: FastifyReply,
  options: EventStreamOptions = {},
): EventStream {
  const budget = request.server.eventStreams
  const raw = reply.raw
  let timers: { heartbeat: NodeJS.Timeout; maxAge: NodeJS.Timeout } | undefined
  let markClosed = () => {}
  const closed = new Promise<void>((resolve) => {
    markClosed = resolve
  })
  const write = (chunk: string) => {
    if (raw.writableEnded || raw.destroyed) return
    if (raw.writableLength > MAX_BUFFERED_BYTES) {
      raw.destroy()
      return
    }
    raw.write(chunk)
  }
  const finish = () => {
    if (timers !== undefined) {
      clearInterval(timers.heartbeat)
      clearTimeout(timers.maxAge)
    }
    release()
    markClosed()
  }
  const stream: ClosableStream = {
    close(reason: StreamCloseReason) {
      const retry = reason === 'superseded' ? SUPERSEDED_RECONNECT_MS : RECONNECT_MS
      write(`retry: ${retry}\nevent: closed\ndata: ${JSON.stringify({ reason })}\n\n`)
      raw.end()
      finish()
    },
  }
  const release = budget.admit(stream, options.owner)

  reply.hijack()
  // Hijacking skips Fastify's sending: the headers set so far (security headers) go out here.
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined) raw.setHeader(name, value)
  // The stream is one user's: never stored either. `connection: close` so the socket (and its descriptor)
  // goes with the stream rather than idling in keep-alive.
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store, no-transform',
    connection: 'close',
    'x-accel-buffering': 'no',
  })
  raw.on('close', finish)
  // A write to a client that is gone: the socket is dropped, 'close' then counts the stream out.
  raw.on('error', () => raw.destroy())
  write(`retry: ${RECONNECT_MS}\n\n`)
  timers = {
    heartbeat: setInterval(() => write(': keep-alive\n\n'), budget.limits.heartbeatMs),
    maxAge: setTimeout(() => stream.close('max-age'), budget.limits.maxAgeMs),
  }
  return {
    send(event, data) {
      write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    },
    closed,
  }
}
