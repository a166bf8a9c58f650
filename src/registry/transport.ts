import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { EdgestarError, redactUrl } from '../errors.js'
import { moduleLogger } from '../log.js'
import { AuthManager } from './auth.js'
import { DockerConfigCredentials, defaultDockerConfigPath } from './docker-config.js'
import { registryBaseUrl } from './reference.js'
import type { RegistryClientOptions, RegistryStats, RetryPolicy } from './types.js'

const log = moduleLogger('registry')

const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 10_000 }
const MAX_REDIRECTS = 5
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504])
const MAX_AUTH_ROUNDS = 2
/** Error bodies are read only this far, for the message; the rest is thrown away. */
const ERROR_BODY_LIMIT_BYTES = 64 * 1024
/** How long `close` lets requests still running finish before it cuts them. */
const CLOSE_GRACE_MS = 1000

/** HTTP methods the registry API uses. */
export type HttpMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE'

/** Headers as undici returns them. */
export type ResponseHeaders = Record<string, string | string[] | undefined>

/** Body of a response: an async iterable of Buffers that must be consumed or destroyed. */
export type ResponseBody = Readable

/** One request through the transport. */
export interface TransportRequest {
  /** Registry the request belongs to: decides auth, and which origin may see it. */
  registry: string
  url: string
  method: HttpMethod
  /** Token scopes, e.g. `repository:library/alpine:pull`. */
  scopes: readonly string[]
  headers?: Record<string, string>
  /** A Buffer, or a factory of a fresh stream for each attempt. */
  body?: Buffer | (() => Readable)
  /** Follow 3xx (default true for GET and HEAD). */
  followRedirects?: boolean
  /** Attempts for resets, timeouts, 5xx and 429; default the client policy (1 for uploads). */
  maxAttempts?: number
  /** Header and body-read timeout of this request in ms; default the client's. */
  timeoutMs?: number
  /** Called with the reason before each retry (after a reset, timeout, 5xx or 429). */
  onRetry?: (reason: unknown) => void
  /** Drops the request in flight and any retry (see RangeReadOptions.signal). */
  signal?: AbortSignal
}

/** A response whose headers arrived; `body` must be read or discarded. */
export interface TransportResponse {
  status: number
  headers: ResponseHeaders
  body: ResponseBody
  /** URL that answered, after redirects. */
  url: string
  redirected: boolean
}

/** A network-level failure undici reports (reset, refused, timeout) that may pass. */
function closedError(): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_REGISTRY_CLOSED',
    'the registry client was closed while this request was running',
  )
}

export function isTransientNetworkError(err: unknown): boolean {
  if (err instanceof EdgestarError) return false
  const code = (err as { code?: unknown })?.code
  if (typeof code !== 'string')
    return err instanceof Error && /other side closed|socket|terminated/i.test(err.message)
  if (
    code === 'UND_ERR_INVALID_ARG' ||
    code === 'UND_ERR_ABORTED' ||
    code === 'UND_ERR_DESTROYED' ||
    code === 'UND_ERR_NOT_SUPPORTED'
  )
    return false
  return code.startsWith('UND_ERR_') || /^E[A-Z_]+$/.test(code)
}

/**
 * The wait before retry number `attempt` (1-based): the server's Retry-After (seconds
 * or HTTP date) when given, else exponential backoff with equal jitter; both capped.
 */
export function retryDelayMs(
  attempt: number,
  policy: RetryPolicy,
  retryAfter?: string,
  random: () => number = Math.random,
): number {
  if (retryAfter !== undefined) {
    const seconds = Number(retryAfter)
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(retryAfter) - Date.now()
    if (Number.isFinite(ms)) return Math.min(Math.max(ms, 0), policy.maxDelayMs)
  }
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1))
  return ceiling / 2 + random() * (ceiling / 2)
}

/** First value of a header. */
export function headerValue(headers: ResponseHeaders, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/**
 * HTTP for the registry client: pooled keep-alive connections (one undici Agent), auth
 * on the registry's own origin only, redirects, retries with backoff, and the byte and
 * request counters. Bodies are the caller's to consume through `readAll`/`discard`/`chunks`
 * so that every byte received is counted.
 */
export class RegistryTransport {
  readonly stats: RegistryStats = { bytesReceived: 0, requests: 0 }
  readonly retry: RetryPolicy
  readonly auth: AuthManager
  readonly insecureRegistries: readonly string[]
  private readonly agent: Agent
  // Requests sent and not yet done with, each with the controller that cuts it (`close`).
  private readonly requestsOpen = new Set<AbortController>()
  private closing: Promise<void> | undefined
  private readonly userAgent: string

  constructor(options: RegistryClientOptions) {
    this.retry = { ...DEFAULT_RETRY, ...options.retry }
    this.insecureRegistries = options.insecureRegistries ?? []
    this.userAgent = options.userAgent ?? 'edgestar/0.1'
    const timeoutMs = options.requestTimeoutMs ?? 30_000
    // TODO(registry): HTTP(S)_PROXY and NO_PROXY are not honoured; a gateway that can
    // reach its registry only through a proxy cannot pull.
    this.agent = new Agent({
      connections: options.connectionsPerOrigin ?? 6,
      keepAliveTimeout: 30_000,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connectTimeout: Math.min(timeoutMs, 10_000),
    })

    const configPath =
      options.dockerConfigPath === undefined ? defaultDockerConfigPath() : options.dockerConfigPath
    this.auth = new AuthManager({
      credentials: options.credentials ?? {},
      dockerConfig: configPath === null ? undefined : new DockerConfigCredentials(configPath),
      insecureRegistries: this.insecureRegistries,
      fetchToken: (url, headers) => this.fetchToken(url, headers),
    })
  }

  /** `http(s)://host[:port]` of a registry's API. */
  baseUrl(registry: string): string {
    return registryBaseUrl(registry, this.insecureRegistries)
  }

  /**
   * Sends a request: attaches auth when the URL is on the registry's origin, answers
   * 401 challenges, follows redirects (dropping Authorization on other origins) and
   * retries transient failures. Returns any other status to the caller. Throws
   * EDGESTAR_REGISTRY_UNREACHABLE when the network keeps failing.
   */
  async send(req: TransportRequest): Promise<TransportResponse> {
    const idempotent = req.method === 'GET' || req.method === 'HEAD'
    const maxAttempts = req.maxAttempts ?? (idempotent ? this.retry.maxAttempts : 1)
    const follow = req.followRedirects ?? idempotent
    let url = req.url
    let method = req.method
    let attempt = 0
    let authRounds = 0
    let redirects = 0

    for (;;) {
      attempt++
      req.signal?.throwIfAborted()
      const authorization = await this.authorizationFor(req, url)
      let res: TransportResponse
      try {
        res = await this.once(url, method, req, authorization)
      } catch (err) {
        if (!isTransientNetworkError(err) || attempt >= maxAttempts)
          throw this.unreachable(req, url, err, attempt)
        req.onRetry?.(err)
        await this.backoff(url, attempt, undefined, err, req.signal)
        continue
      }

      if (res.status === 401) {
        if (!this.isRegistryOrigin(req.registry, url) || authRounds >= MAX_AUTH_ROUNDS) return res
        const challenge = headerValue(res.headers, 'www-authenticate')
        await this.discard(res)
        authRounds++
        attempt--
        const again = await this.auth.onUnauthorized(
          req.registry,
          req.scopes,
          challenge,
          authorization,
        )
        if (!again) return this.emptyResponse(res, 401)
        continue
      }

      if (follow && REDIRECT_STATUSES.has(res.status)) {
        const location = headerValue(res.headers, 'location')
        await this.discard(res)
        if (!location || ++redirects > MAX_REDIRECTS) throw this.badRedirect(req, url, location)
        url = new URL(location, url).toString()
        if (res.status === 303) method = 'GET'
        attempt--
        continue
      }

      if (RETRY_STATUSES.has(res.status) && attempt < maxAttempts) {
        const retryAfter = headerValue(res.headers, 'retry-after')
        await this.discard(res)
        req.onRetry?.(`status ${res.status}`)
        await this.backoff(url, attempt, retryAfter, `status ${res.status}`, req.signal)
        continue
      }
      return { ...res, redirected: url !== req.url }
    }
  }

  /**
   * Reads a whole body (up to `limitBytes`, else EDGESTAR_REGISTRY_BAD_RESPONSE), counted;
   * `onBytes` hears of each piece as it arrives.
   */
  async readAll(
    res: TransportResponse,
    limitBytes: number,
    onBytes?: (bytes: number) => void,
  ): Promise<Buffer> {
    const parts: Buffer[] = []
    let total = 0
    for await (const chunk of this.chunks(res.body, onBytes)) {
      total += chunk.length
      if (total > limitBytes) {
        this.drop(res)
        throw new EdgestarError(
          'EDGESTAR_REGISTRY_BAD_RESPONSE',
          `response from ${redactUrl(res.url)} is larger than ${limitBytes} bytes`,
        )
      }
      parts.push(chunk)
    }
    return Buffer.concat(parts, total)
  }

  /** Iterates a body's chunks, counting them into `stats.bytesReceived` and to `onBytes`. */
  async *chunks(body: ResponseBody, onBytes?: (bytes: number) => void): AsyncGenerator<Buffer> {
    for await (const chunk of body) {
      const buf = chunk as Buffer
      this.stats.bytesReceived += buf.length
      onBytes?.(buf.length)
      yield buf
    }
  }

  /** Drops a body without reading it; the connection is closed rather than reused. */
  drop(res: TransportResponse): void {
    // undici's body emits an abort error when destroyed; nobody else is listening for it.
    res.body.on('error', () => {})
    res.body.destroy()
  }

  /** Reads a little of an unwanted body (so the connection can be reused) and drops it. */
  async discard(res: TransportResponse): Promise<Buffer> {
    try {
      return await this.readAll(res, ERROR_BODY_LIMIT_BYTES)
    } catch {
      this.drop(res)
      return Buffer.alloc(0)
    }
  }

  /** Waits before a retry and logs why; `signal` cuts the wait short (it then rejects). */
  async backoff(
    url: string,
    attempt: number,
    retryAfter: string | undefined,
    reason: unknown,
    signal?: AbortSignal,
  ): Promise<void> {
    const delayMs = retryDelayMs(attempt, this.retry, retryAfter)
    log.warn(
      { url: redactUrl(url), attempt, delayMs: Math.round(delayMs), reason: describe(reason) },
      'request retried',
    )
    await sleep(delayMs, undefined, signal === undefined ? {} : { signal })
  }

  /** True when the URL is on the registry's own API origin (the only one that sees auth). */
  isRegistryOrigin(registry: string, url: string): boolean {
    if (registry === '') return false
    return new URL(url).origin === new URL(this.baseUrl(registry)).origin
  }

  /**
   * Releases every pooled connection. Requests still running get `CLOSE_GRACE_MS` to end,
   * then are cut: a registry that hangs must not hold a process's exit for its timeouts
   * (an `edgestar mount` stopped with a fetch hung took 30 s to exit).
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce()
    return this.closing
  }

  private async closeOnce(): Promise<void> {
    const deadline = Date.now() + CLOSE_GRACE_MS
    while (this.requestsOpen.size > 0 && Date.now() < deadline) await sleep(25)
    // undici's destroy() leaves a request waiting for headers on a reused connection
    // pending for good (and after close() any such request): each is aborted itself.
    if (this.requestsOpen.size > 0) {
      log.debug({ requests: this.requestsOpen.size }, 'requests still running at close were cut')
      for (const controller of this.requestsOpen) controller.abort(closedError())
    }
    await this.agent.close()
  }

  private async authorizationFor(req: TransportRequest, url: string): Promise<string | undefined> {
    if (!this.isRegistryOrigin(req.registry, url)) return undefined
    return this.auth.header(req.registry, req.scopes)
  }

  private async once(
    url: string,
    method: HttpMethod,
    req: TransportRequest,
    authorization: string | undefined,
  ): Promise<TransportResponse> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...req.headers }
    if (authorization !== undefined) headers.authorization = authorization
    const body = typeof req.body === 'function' ? req.body() : req.body

    this.stats.requests++
    const timeouts =
      req.timeoutMs === undefined
        ? {}
        : { headersTimeout: req.timeoutMs, bodyTimeout: req.timeoutMs }
    const { controller, done } = this.openRequest(req.signal)
    let res: Awaited<ReturnType<typeof request>>
    try {
      res = await request(url, {
        method,
        headers,
        body,
        dispatcher: this.agent,
        ...timeouts,
        signal: controller.signal,
      })
    } catch (err) {
      done()
      throw err
    }
    // Open until its body is read to the end or destroyed.
    res.body.once('close', done)
    log.debug({ method, url: redactUrl(url), status: res.statusCode }, 'registry request')
    return { status: res.statusCode, headers: res.headers, body: res.body, url, redirected: false }
  }

  // A controller for one request, aborted with the caller's `signal` or by `close`;
  // `done` lets go of both (a caller's signal may outlive many requests).
  private openRequest(signal: AbortSignal | undefined): {
    controller: AbortController
    done: () => void
  } {
    const controller = new AbortController()
    const forward = (): void => controller.abort(signal?.reason)
    if (signal?.aborted) forward()
    else signal?.addEventListener('abort', forward, { once: true })
    this.requestsOpen.add(controller)
    const done = (): void => {
      signal?.removeEventListener('abort', forward)
      this.requestsOpen.delete(controller)
    }
    return { controller, done }
  }

  private async fetchToken(
    url: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; body: unknown }> {
    const res = await this.send({ registry: '', url, method: 'GET', scopes: [], headers })
    const bytes = await this.readAll(res, 1024 * 1024)
    try {
      return { status: res.status, body: JSON.parse(bytes.toString('utf8')) }
    } catch {
      return { status: res.status, body: undefined }
    }
  }

  private emptyResponse(res: TransportResponse, status: number): TransportResponse {
    return { ...res, status }
  }

  private unreachable(req: TransportRequest, url: string, err: unknown, attempts: number): unknown {
    if (!isTransientNetworkError(err)) return err
    return new EdgestarError(
      'EDGESTAR_REGISTRY_UNREACHABLE',
      `registry ${req.registry || new URL(url).host} unreachable at ${redactUrl(url)} ` +
        `after ${attempts} attempt(s): ${describe(err)}`,
      {
        hint: 'check the network link and that the registry is up; cached data is still served',
        cause: err,
      },
    )
  }

  private badRedirect(
    req: TransportRequest,
    url: string,
    location: string | undefined,
  ): EdgestarError {
    return new EdgestarError(
      'EDGESTAR_REGISTRY_BAD_RESPONSE',
      `registry ${req.registry} redirected ${redactUrl(url)} ` +
        (location ? 'too many times' : 'without a Location'),
    )
  }
}

function describe(reason: unknown): string {
  if (typeof reason === 'string') return reason
  const code = (reason as { code?: unknown })?.code
  const message = reason instanceof Error ? reason.message : String(reason)
  return typeof code === 'string' ? `${code} ${message}` : message
}
