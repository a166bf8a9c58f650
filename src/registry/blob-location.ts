import { redactUrl } from '../errors.js'
import { moduleLogger } from '../log.js'
import type { RegistryTransport, TransportRequest, TransportResponse } from './transport.js'
import type { ImageReference } from './types.js'

/** Per-request limits and hooks a blob request passes on to the transport. */
export type SendOptions = Pick<TransportRequest, 'maxAttempts' | 'timeoutMs' | 'onRetry' | 'signal'>

const log = moduleLogger('registry')

/** A redirect target with no expiry in its URL is reused this long. */
const DEFAULT_REDIRECT_TTL_MS = 5 * 60_000
/** Stop reusing a signed URL this long before it says it expires. */
const REDIRECT_EXPIRY_MARGIN_MS = 15_000
/** Statuses with which a cached redirect target says it no longer serves us. */
const REFUSED_STATUSES = new Set([400, 401, 403, 404, 410])

/**
 * When a signed redirect URL stops being valid, from the usual query parameters:
 * S3 `X-Amz-Date` + `X-Amz-Expires`, CloudFront/GCS `Expires` (epoch seconds), Azure
 * `se` (ISO time). Undefined when the URL names no expiry.
 */
export function redirectExpiryMs(url: string): number | undefined {
  const params = new URL(url).searchParams
  const get = (name: string): string | null => {
    for (const [key, value] of params) if (key.toLowerCase() === name) return value
    return null
  }
  const amzDate = get('x-amz-date')
  const amzExpires = get('x-amz-expires')
  if (amzDate && amzExpires) {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate)
    if (m)
      return (
        Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) + Number(amzExpires) * 1000
      )
  }
  const expires = get('expires')
  if (expires && /^\d+$/.test(expires)) return Number(expires) * 1000
  const se = get('se')
  if (se && !Number.isNaN(Date.parse(se))) return Date.parse(se)
  return undefined
}

interface CachedRedirect {
  url: string
  expiresAtMs: number
}

/** Shared by every reader of one client: blob digest → where the registry last sent us. */
export class RedirectCache {
  private readonly entries = new Map<string, CachedRedirect>()

  get(key: string, nowMs = Date.now()): string | undefined {
    const entry = this.entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAtMs > nowMs) return entry.url
    this.entries.delete(key)
    return undefined
  }

  remember(key: string, url: string, nowMs = Date.now()): void {
    const expiry = redirectExpiryMs(url)
    const expiresAtMs =
      expiry === undefined ? nowMs + DEFAULT_REDIRECT_TTL_MS : expiry - REDIRECT_EXPIRY_MARGIN_MS
    if (expiresAtMs <= nowMs) return
    this.entries.set(key, { url, expiresAtMs })
  }

  forget(key: string): void {
    this.entries.delete(key)
  }
}

/**
 * Where one blob is fetched from: the registry's blob URL, or the redirect target the
 * registry last sent, while it is valid. Sends a GET or HEAD there and, when a cached
 * target refuses or fails, forgets it and asks the registry again.
 */
export class BlobLocation {
  readonly blobUrl: string
  readonly scopes: readonly string[]
  private readonly cacheKey: string

  constructor(
    private readonly transport: RegistryTransport,
    readonly ref: ImageReference,
    readonly digest: string,
    private readonly redirects: RedirectCache,
  ) {
    this.blobUrl = `${transport.baseUrl(ref.registry)}/v2/${ref.repository}/blobs/${digest}`
    this.scopes = [`repository:${ref.repository}:pull`]
    this.cacheKey = `${ref.registry} ${digest}`
  }

  /**
   * Sends a request for the blob (range headers in `headers`), via the cached redirect if
   * any; `options` bound its attempts and timeout and hear of its retries.
   */
  async send(
    method: 'GET' | 'HEAD',
    headers: Record<string, string>,
    options: SendOptions = {},
  ): Promise<TransportResponse> {
    const cached = this.redirects.get(this.cacheKey)
    if (cached) {
      const res = await this.tryCached(cached, method, headers)
      if (res) return res
    }
    const res = await this.request(this.blobUrl, method, headers, options)
    if (
      res.redirected &&
      !this.transport.isRegistryOrigin(this.ref.registry, res.url) &&
      res.status < 400
    )
      this.redirects.remember(this.cacheKey, res.url)
    return res
  }

  private async tryCached(
    url: string,
    method: 'GET' | 'HEAD',
    headers: Record<string, string>,
  ): Promise<TransportResponse | undefined> {
    try {
      const res = await this.request(url, method, headers, { maxAttempts: 1 })
      if (!REFUSED_STATUSES.has(res.status) && res.status < 500) return res
      await this.transport.discard(res)
      log.info(
        { digest: this.digest, status: res.status, url: redactUrl(url) },
        'redirect target refused, asking registry again',
      )
    } catch (err) {
      log.info(
        { digest: this.digest, url: redactUrl(url), reason: (err as Error).message },
        'redirect target failed, asking registry again',
      )
    }
    this.redirects.forget(this.cacheKey)
    return undefined
  }

  private request(
    url: string,
    method: 'GET' | 'HEAD',
    headers: Record<string, string>,
    options: SendOptions,
  ): Promise<TransportResponse> {
    const req = { registry: this.ref.registry, url, method, scopes: this.scopes, headers }
    return this.transport.send({ ...req, ...options })
  }
}
