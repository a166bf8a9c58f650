import { connect } from 'node:net'
import { EdgestarError } from '../errors.js'
import type { ApiMessage, ApiMethod } from './protocol.js'

/**
 * Talks to a running agent over its Unix socket. Every method throws the agent's own
 * error (same code, message and hint), EDGESTAR_AGENT_NOT_RUNNING when nothing
 * listens, or EDGESTAR_AGENT_SOCKET_DENIED when the socket may not be opened.
 */
export class AgentClient {
  readonly socketPath: string

  constructor(socketPath: string) {
    this.socketPath = socketPath
  }

  /** Calls `method` and returns its result; messages before the result go to `onMessage`. */
  call<T = unknown>(
    method: ApiMethod,
    params: Record<string, unknown> = {},
    onMessage?: (message: ApiMessage) => void,
  ): Promise<T> {
    return this.open(method, params, onMessage).result as Promise<T>
  }

  /**
   * Like `call`, for methods that stream until the client hangs up (`logs` with
   * follow, `events`): returns the result promise and a `close` that ends the stream.
   */
  open(
    method: ApiMethod,
    params: Record<string, unknown>,
    onMessage?: (message: ApiMessage) => void,
  ): { result: Promise<unknown>; close: () => void } {
    const socket = connect(this.socketPath)
    let buffered = ''
    let settled = false
    const result = new Promise<unknown>((resolve, reject) => {
      const finish = (fn: () => void): void => {
        if (settled) return
        settled = true
        fn()
      }
      socket.setEncoding('utf8')
      socket.on('connect', () => socket.write(`${JSON.stringify({ method, params })}\n`))
      socket.on('data', (text: string) => {
        buffered += text
        let newline = buffered.indexOf('\n')
        while (newline >= 0) {
          const line = buffered.slice(0, newline)
          buffered = buffered.slice(newline + 1)
          newline = buffered.indexOf('\n')
          const message = parseMessage(line)
          if (message?.type !== 'result') {
            if (message !== undefined) onMessage?.(message)
            continue
          }
          socket.end()
          if (message.ok) finish(() => resolve(message.result))
          else {
            const { code, message: text, hint } = message.error
            finish(() => reject(new EdgestarError(code, text, hint === undefined ? {} : { hint })))
          }
        }
      })
      socket.on('error', (err: NodeJS.ErrnoException) =>
        finish(() => reject(this.connectError(err))),
      )
      socket.on('close', () =>
        finish(() =>
          reject(
            new EdgestarError(
              'EDGESTAR_AGENT_DISCONNECTED',
              `the agent closed ${this.socketPath} before answering ${method}`,
              {
                hint: 'the agent may have stopped; check its logs (journalctl -u edgestar-agent)',
              },
            ),
          ),
        ),
      )
    })
    const close = (): void => {
      settled = true
      socket.destroy()
    }
    return { result, close }
  }

  private connectError(err: NodeJS.ErrnoException): EdgestarError {
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      return new EdgestarError(
        'EDGESTAR_AGENT_NOT_RUNNING',
        `no edgestar agent is listening on ${this.socketPath}`,
        {
          hint: 'start it (systemctl start edgestar-agent, or edgestar agent), or pass --socket PATH of a running agent',
          cause: err,
        },
      )
    }
    if (err.code === 'EACCES' || err.code === 'EPERM') {
      return new EdgestarError(
        'EDGESTAR_AGENT_SOCKET_DENIED',
        `permission denied opening the agent socket ${this.socketPath}`,
        {
          hint: 'run as root, or as a member of the group the agent gives the socket (socketGroup in its config)',
          cause: err,
        },
      )
    }
    return new EdgestarError(
      'EDGESTAR_AGENT_UNREACHABLE',
      `cannot talk to the agent at ${this.socketPath}: ${err.message}`,
      {
        cause: err,
      },
    )
  }
}

function parseMessage(line: string): ApiMessage | undefined {
  try {
    const value = JSON.parse(line) as ApiMessage
    return typeof value === 'object' && value !== null && 'type' in value ? value : undefined
  } catch {
    return undefined
  }
}
