import { chmod, chown, mkdir, rm } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import path from 'node:path'
import { EdgestarError, isEdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { API_METHODS, type ApiMessage, type ApiMethod, MAX_REQUEST_BYTES } from './protocol.js'

/**
 * Answers one request. `send` streams messages before the result; `signal` aborts when
 * the client hangs up (streaming handlers stop then). The returned value is the result.
 */
export type ApiHandler = (
  method: ApiMethod,
  params: Record<string, unknown>,
  send: (message: ApiMessage) => void,
  signal: AbortSignal,
) => Promise<unknown>

/** Where and how the socket is created. */
export interface ApiServerOptions {
  socketPath: string
  /** Numeric gid that may use the socket (mode 0660); root only (0600) when undefined. */
  socketGid?: number
}

/**
 * The agent's local API on a Unix socket: one JSON request line per connection,
 * answered by message lines and a final result line. Creates the socket's directory,
 * replaces a stale socket file, and restricts the socket to root (or a group).
 */
export class ApiServer {
  private readonly options: ApiServerOptions
  private readonly handler: ApiHandler
  private readonly sockets = new Set<Socket>()
  private server: Server | undefined
  private readonly log = moduleLogger('agent-api')

  constructor(options: ApiServerOptions, handler: ApiHandler) {
    this.options = options
    this.handler = handler
  }

  /** Listens; throws EDGESTAR_AGENT_SOCKET_FAILED when the socket cannot be created. */
  async listen(): Promise<void> {
    const socketPath = this.options.socketPath
    await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 })
    if (await isAnswering(socketPath)) {
      throw new EdgestarError(
        'EDGESTAR_AGENT_ALREADY_RUNNING',
        `another agent already listens on ${socketPath}`,
        {
          hint: 'stop it first (systemctl stop edgestar-agent), or give this one another --socket and --state-dir',
        },
      )
    }
    // A socket file left by a killed agent would make listen fail with EADDRINUSE.
    await rm(socketPath, { force: true })

    const server = createServer((socket) => this.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new EdgestarError(
            'EDGESTAR_AGENT_SOCKET_FAILED',
            `cannot listen on ${socketPath}: ${err.message}`,
            { cause: err },
          ),
        ),
      )
      // The umask keeps the socket private until chmod, so no window lets others in.
      const oldMask = process.umask(0o177)
      server.listen(socketPath, () => {
        process.umask(oldMask)
        resolve()
      })
    })
    this.server = server
    if (this.options.socketGid !== undefined) {
      await chown(socketPath, 0, this.options.socketGid)
      await chmod(socketPath, 0o660)
    } else {
      await chmod(socketPath, 0o600)
    }
    this.log.info({ socket: socketPath }, 'api listening')
  }

  /** Stops listening, ends open connections and removes the socket file. */
  async close(): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const socket of this.sockets) socket.destroy()
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
    await rm(this.options.socketPath, { force: true })
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket)
    const abort = new AbortController()
    let buffered = ''
    let isHandled = false
    socket.setEncoding('utf8')
    socket.on('close', () => {
      this.sockets.delete(socket)
      abort.abort()
    })
    socket.on('error', () => abort.abort())
    socket.on('data', (text: string) => {
      if (isHandled) return
      buffered += text
      const newline = buffered.indexOf('\n')
      if (newline < 0 && buffered.length <= MAX_REQUEST_BYTES) return
      isHandled = true
      void this.answer(
        socket,
        buffered.slice(0, newline < 0 ? buffered.length : newline),
        abort.signal,
      )
    })
  }

  private async answer(socket: Socket, line: string, signal: AbortSignal): Promise<void> {
    const send = (message: ApiMessage): void => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`)
    }
    try {
      const { method, params } = parseRequest(line)
      const result = await this.handler(method, params, send, signal)
      send({ type: 'result', ok: true, result: result ?? null })
    } catch (err) {
      const error = isEdgestarError(err)
        ? err.toJSON()
        : { code: 'EDGESTAR_INTERNAL', message: err instanceof Error ? err.message : String(err) }
      if (!isEdgestarError(err)) this.log.error({ err }, 'api handler failed')
      send({ type: 'result', ok: false, error })
    }
    socket.end()
  }
}

function parseRequest(line: string): { method: ApiMethod; params: Record<string, unknown> } {
  if (line.length > MAX_REQUEST_BYTES)
    throw new EdgestarError(
      'EDGESTAR_AGENT_BAD_REQUEST',
      `request is longer than ${MAX_REQUEST_BYTES} bytes`,
    )
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new EdgestarError('EDGESTAR_AGENT_BAD_REQUEST', 'request is not one line of JSON')
  }
  const request = (value ?? {}) as { method?: unknown; params?: unknown }
  if (!API_METHODS.includes(request.method as ApiMethod)) {
    throw new EdgestarError(
      'EDGESTAR_AGENT_BAD_REQUEST',
      `unknown API method ${JSON.stringify(request.method)}`,
      {
        hint: `methods: ${API_METHODS.join(', ')}`,
      },
    )
  }
  const params = typeof request.params === 'object' && request.params !== null ? request.params : {}
  return { method: request.method as ApiMethod, params: params as Record<string, unknown> }
}

/** True when something accepts connections on the socket (a live agent, not a stale file). */
function isAnswering(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(socketPath)
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => resolve(false))
  })
}
