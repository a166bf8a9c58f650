import { createConnection, createServer, type Server, type Socket } from 'node:net'

/** A loopback TCP proxy that can drop the link (close every socket, refuse new ones) and restore it. */
export interface PauseProxy {
  /** `127.0.0.1:PORT`, to use in image references. */
  host: string
  port: number
  /** Closes the listener and every connection; the next connect is refused. */
  pause(): Promise<void>
  /** Listens again on the same port. */
  resume(): Promise<void>
  stop(): Promise<void>
}

/** Starts a proxy on a free loopback port forwarding to `127.0.0.1:targetPort`. */
export async function startPauseProxy(targetPort: number): Promise<PauseProxy> {
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let port = 0

  const listen = async (): Promise<void> => {
    if (server) return
    server = createServer((client) => {
      const upstream = createConnection({ host: '127.0.0.1', port: targetPort })
      for (const socket of [client, upstream]) {
        sockets.add(socket)
        socket.on('close', () => sockets.delete(socket))
        socket.on('error', () => {
          client.destroy()
          upstream.destroy()
        })
      }
      client.pipe(upstream).pipe(client)
    })
    await new Promise<void>((done, fail) => {
      server?.once('error', fail)
      server?.listen(port, '127.0.0.1', done)
    })
    const address = server.address()
    if (address && typeof address === 'object') port = address.port
  }

  const pause = async (): Promise<void> => {
    const listening = server
    const closing = new Promise<void>((done) =>
      listening ? listening.close(() => done()) : done(),
    )
    for (const socket of sockets) socket.destroy()
    await closing
    server = undefined
  }

  await listen()
  return {
    get host() {
      return `127.0.0.1:${port}`
    },
    get port() {
      return port
    },
    pause,
    resume: listen,
    stop: pause,
  }
}
