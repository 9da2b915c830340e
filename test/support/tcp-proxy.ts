import net from 'node:net'

/**
 * A loopback TCP proxy in front of a real server, so one test can make Postgres or Redis unreachable for
 * its own app without stopping the shared server under every other test.
 */
export class TcpProxy {
  port = 0
  private readonly server: net.Server
  private readonly sockets = new Set<net.Socket>()
  private open = true

  constructor(targetHost: string, targetPort: number) {
    this.server = net.createServer((client) => {
      if (!this.open) {
        client.destroy()
        return
      }
      const upstream = net.connect(targetPort, targetHost)
      for (const socket of [client, upstream]) {
        this.sockets.add(socket)
        socket.on('close', () => this.sockets.delete(socket))
        socket.on('error', () => {
          client.destroy()
          upstream.destroy()
        })
      }
      client.pipe(upstream).pipe(client)
    })
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.port = (this.server.address() as net.AddressInfo).port
    return this
  }

  /** Drops every connection and refuses new ones, as if the server went away. */
  cut(): void {
    this.open = false
    for (const socket of this.sockets) socket.destroy()
  }

  restore(): void {
    this.open = true
  }

  async close(): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
