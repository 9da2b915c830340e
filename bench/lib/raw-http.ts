/**
 * A minimal HTTP/1.1 keep-alive client for the open-loop generator: pre-built request buffers written to
 * plain sockets, answers parsed just enough (status, content-length, body). It costs a fraction of a
 * general-purpose client per request, which matters on a small machine where the generator shares the CPU
 * with the server: the arrival rate asked for is then really offered.
 */
import { connect, type Socket } from 'node:net'

export type Done = (error: Error | undefined, status: number, body: string) => void

const HEADER_END = Buffer.from('\r\n\r\n')

class Connection {
  private socket: Socket | undefined
  private buffer: Buffer = Buffer.alloc(0)
  private done: Done | undefined
  private readonly host: string
  private readonly port: number
  private readonly onFree: (connection: Connection) => void

  constructor(host: string, port: number, onFree: (connection: Connection) => void) {
    this.host = host
    this.port = port
    this.onFree = onFree
  }

  send(request: Buffer, done: Done): void {
    this.done = done
    if (this.socket === undefined || this.socket.destroyed) this.open()
    this.socket!.write(request)
  }

  private open(): void {
    const socket = connect({ host: this.host, port: this.port, noDelay: true })
    this.buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => this.receive(chunk))
    const fail = (error?: Error) => {
      if (this.socket === socket) this.socket = undefined
      const done = this.done
      this.done = undefined
      if (done) {
        done(error ?? new Error('connection closed'), 0, '')
        this.onFree(this)
      }
    }
    socket.on('error', fail)
    socket.on('close', () => fail())
    this.socket = socket
  }

  private receive(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    const headerEnd = this.buffer.indexOf(HEADER_END)
    if (headerEnd < 0) return
    const head = this.buffer.toString('latin1', 0, headerEnd)
    const status = Number(head.slice(9, 12))
    const match = /\r\ncontent-length:\s*(\d+)/i.exec(head)
    if (!match) {
      // Chunked answers are not expected from the routes measured; fail loudly rather than guess.
      this.socket?.destroy(new Error('answer without content-length'))
      return
    }
    const bodyStart = headerEnd + 4
    const bodyEnd = bodyStart + Number(match[1])
    if (this.buffer.length < bodyEnd) return
    const body = this.buffer.toString('utf8', bodyStart, bodyEnd)
    this.buffer = this.buffer.subarray(bodyEnd)
    const done = this.done
    this.done = undefined
    if (/\r\nconnection:\s*close/i.test(head)) this.socket?.end()
    done?.(undefined, status, body)
    this.onFree(this)
  }

  close(): void {
    this.socket?.destroy()
  }
}

/** `connections` keep-alive sockets; requests beyond them wait in a FIFO (their wait counts as latency). */
export class RawPool {
  private readonly idle: Connection[] = []
  private readonly all: Connection[] = []
  private readonly waiting: [Buffer, Done][] = []

  constructor(host: string, port: number, connections: number) {
    for (let i = 0; i < connections; i++) {
      const connection = new Connection(host, port, (free) => this.release(free))
      this.all.push(connection)
      this.idle.push(connection)
    }
  }

  get queued(): number {
    return this.waiting.length
  }

  request(buffer: Buffer, done: Done): void {
    const connection = this.idle.pop()
    if (connection) connection.send(buffer, done)
    else this.waiting.push([buffer, done])
  }

  private release(connection: Connection): void {
    const next = this.waiting.shift()
    if (next) connection.send(next[0], next[1])
    else this.idle.push(connection)
  }

  close(): void {
    for (const connection of this.all) connection.close()
  }
}

/** A POST with an empty body, ready to write. */
export function postRequest(host: string, port: number, path: string, authorization: string): Buffer {
  return Buffer.from(
    `POST ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nAuthorization: ${authorization}\r\nContent-Length: 0\r\n\r\n`,
    'latin1',
  )
}
