import type { FastifyReply, FastifyRequest } from 'fastify'

export interface EventStream {
  send(event: string, data: unknown): void
  /** Resolves when the client goes away. */
  closed: Promise<void>
}

/**
 * Takes over the response as a Server-Sent Events stream (text/event-stream), with a comment heartbeat so
 * proxies keep it open. The caller sends events until `closed` resolves.
 */
export function openEventStream(request: FastifyRequest, reply: FastifyReply): EventStream {
  reply.hijack()
  const raw = reply.raw
  // Hijacking skips Fastify's sending: the headers set so far (security headers) go out here.
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined) raw.setHeader(name, value)
  // The stream is one user's: never stored either.
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  })
  raw.write('retry: 2000\n\n')
  const heartbeat = setInterval(() => raw.write(': keep-alive\n\n'), 15_000)
  const closed = new Promise<void>((resolve) => {
    request.raw.on('close', () => {
      clearInterval(heartbeat)
      resolve()
    })
  })
  return {
    send(event, data) {
      if (!raw.writableEnded) raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    },
    closed,
  }
}
