/**
 * The local API's wire format: one JSON request line per connection, answered by zero
 * or more message lines and one final `result` line (see docs/agent-api.md).
 */

/** Methods the agent answers. */
export const API_METHODS = [
  'ping',
  'deploy',
  'stop',
  'start',
  'remove',
  'status',
  'list',
  'logs',
  'bandwidth',
  'offline-wait',
  'prefetch',
  'gc',
  'events',
] as const

/** One API method name. */
export type ApiMethod = (typeof API_METHODS)[number]

/** What a client sends (one line). */
export interface ApiRequest {
  method: ApiMethod
  params?: Record<string, unknown>
}

/** An error as it crosses the socket. */
export interface ApiError {
  code: string
  message: string
  hint?: string
}

/** Lines the agent sends back; `result` is always the last one. */
export type ApiMessage =
  | { type: 'event'; event: unknown }
  | { type: 'log'; data: string }
  | { type: 'result'; ok: true; result: unknown }
  | { type: 'result'; ok: false; error: ApiError }

/** Requests longer than this are refused (a deploy request is well under 64 KiB). */
export const MAX_REQUEST_BYTES = 1024 * 1024

/** The socket path when neither flag, env nor config name one. */
export const DEFAULT_SOCKET_PATH = '/run/edgestar/agent.sock'
