import { EdgestarError, redactUrl } from '../errors.js'
import { moduleLogger } from '../log.js'
import type { DockerConfigCredentials } from './docker-config.js'
import { isPlainHttp } from './reference.js'
import type { RegistryCredentials } from './types.js'

const log = moduleLogger('registry')

/** Spec default lifetime of a token without `expires_in` (distribution docs/spec/auth/token.md). */
const DEFAULT_TOKEN_LIFETIME_MS = 60_000
/** Renew this long before expiry so a token never lapses between check and use. */
const TOKEN_RENEW_MARGIN_MS = 10_000

/** One parsed `WWW-Authenticate` challenge. */
export interface AuthChallenge {
  scheme: string
  params: Record<string, string>
}

/** The token endpoint's answer as the transport hands it back. */
export interface TokenResponse {
  status: number
  body: unknown
}

/** Fetches a token URL (GET) with optional headers; supplied by the transport. */
export type TokenFetcher = (url: string, headers: Record<string, string>) => Promise<TokenResponse>

interface CachedToken {
  token: string
  expiresAtMs: number
}

/**
 * Parses a WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."`
 * or `Basic realm="..."`. Quoted values may hold commas.
 */
export function parseChallenge(header: string): AuthChallenge | undefined {
  const match = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header)
  if (!match) return undefined
  const params: Record<string, string> = {}
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/g
  for (const m of (match[2] ?? '').matchAll(re)) {
    params[(m[1] as string).toLowerCase()] =
      m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '')
  }
  return { scheme: (match[1] as string).toLowerCase(), params }
}

/**
 * Authorization for registry requests: remembers which scheme each registry asked for,
 * fetches and caches bearer tokens per scope until shortly before they expire, and
 * looks credentials up fresh each time (explicit ones first, then Docker's config.json).
 * Never logs or throws a credential or token.
 */
export class AuthManager {
  private readonly challenges = new Map<string, AuthChallenge>()
  private readonly tokens = new Map<string, CachedToken>()
  private readonly pending = new Map<string, Promise<CachedToken>>()

  constructor(
    private readonly options: {
      credentials: Record<string, RegistryCredentials>
      dockerConfig: DockerConfigCredentials | undefined
      insecureRegistries: readonly string[]
      fetchToken: TokenFetcher
      now?: () => number
    },
  ) {}

  /**
   * What an operator can do about refused credentials, naming the config.json this
   * client really reads ($DOCKER_CONFIG, the config file's dockerConfigPath, or ~/.docker).
   */
  loginHint(): string {
    const path = this.options.dockerConfig?.path
    if (path === undefined)
      return "give credentials in the edgestar config (reading Docker's config.json is off)"
    return `log in with \`docker login\` (edgestar reads ${path})`
  }

  /**
   * The Authorization header for a request to `registry` needing `scopes`, or undefined
   * while the registry has not asked for auth. Renews a bearer token that is about to expire.
   */
  async header(registry: string, scopes: readonly string[]): Promise<string | undefined> {
    const challenge = this.challenges.get(registry)
    if (!challenge) return undefined
    if (challenge.scheme === 'basic') return this.basicHeader(registry)
    if (challenge.scheme !== 'bearer') return undefined

    const key = tokenKey(registry, scopes)
    const cached = this.tokens.get(key)
    if (cached && cached.expiresAtMs - TOKEN_RENEW_MARGIN_MS > this.now())
      return `Bearer ${cached.token}`
    const fresh = await this.fetchTokenOnce(registry, scopes, challenge)
    return `Bearer ${fresh.token}`
  }

  /**
   * Handles a 401: records the challenge, drops the token that was refused, and says
   * whether a retry can succeed (false when the same credentials were already refused).
   * Throws EDGESTAR_REGISTRY_UNAUTHORIZED when the registry wants credentials we lack.
   */
  async onUnauthorized(
    registry: string,
    scopes: readonly string[],
    wwwAuthenticate: string | undefined,
    sentHeader: string | undefined,
  ): Promise<boolean> {
    const challenge = wwwAuthenticate ? parseChallenge(wwwAuthenticate) : undefined
    if (!challenge || (challenge.scheme !== 'bearer' && challenge.scheme !== 'basic')) {
      throw unauthorized(
        registry,
        'it answered 401 without a usable WWW-Authenticate challenge',
        this.loginHint(),
      )
    }
    const previous = this.challenges.get(registry)
    this.challenges.set(registry, challenge)
    // Drop the token only if it is the one refused: a 401 to a request sent before a
    // concurrent one fetched a fresh token must not throw that token away.
    const key = tokenKey(registry, scopes)
    const cached = this.tokens.get(key)
    if (cached && sentHeader === `Bearer ${cached.token}`) this.tokens.delete(key)

    if (challenge.scheme === 'basic') {
      const header = await this.basicHeader(registry)
      if (header === undefined)
        throw unauthorized(registry, 'it asks for a username and password', this.loginHint())
      return header !== sentHeader
    }
    // A refused bearer token is renewed; the transport bounds how often in a row.
    return previous === undefined || sentHeader === undefined || previous.scheme === 'bearer'
  }

  private async basicHeader(registry: string): Promise<string | undefined> {
    const creds = await this.credentialsFor(registry)
    if (!creds) return undefined
    return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
  }

  private async credentialsFor(registry: string): Promise<RegistryCredentials | undefined> {
    const explicit = this.options.credentials[registry]
    if (explicit) return explicit
    return this.options.dockerConfig?.lookup(registry)
  }

  private fetchTokenOnce(
    registry: string,
    scopes: readonly string[],
    challenge: AuthChallenge,
  ): Promise<CachedToken> {
    // Concurrent reads that all find the token stale share one token request.
    const key = tokenKey(registry, scopes)
    const inflight = this.pending.get(key)
    if (inflight) return inflight
    const promise = this.requestToken(registry, scopes, challenge).finally(() =>
      this.pending.delete(key),
    )
    this.pending.set(key, promise)
    return promise
  }

  private async requestToken(
    registry: string,
    scopes: readonly string[],
    challenge: AuthChallenge,
  ): Promise<CachedToken> {
    const realm = challenge.params.realm
    if (!realm)
      throw unauthorized(registry, 'its bearer challenge names no token realm', this.loginHint())
    const url = new URL(realm)
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service)
    for (const scope of scopes) url.searchParams.append('scope', scope)

    const headers: Record<string, string> = {}
    const creds = await this.credentialsFor(registry)
    if (creds && this.mayReceiveCredentials(url, registry)) {
      headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
    }

    const response = await this.options.fetchToken(url.toString(), headers)
    if (response.status === 401 || response.status === 403) {
      throw unauthorized(
        registry,
        `the token service ${redactUrl(url.origin)} refused the credentials`,
        this.loginHint(),
      )
    }
    const token = readToken(response, this.now())
    if (!token) {
      throw new EdgestarError(
        'EDGESTAR_REGISTRY_AUTH_FAILED',
        `token service ${redactUrl(url.origin)} for ${registry} answered ${response.status} without a token`,
        { hint: 'check that the registry and its token service are reachable and configured' },
      )
    }
    log.debug({ registry, scopes, expiresInMs: token.expiresAtMs - this.now() }, 'token obtained')
    return this.remember(registry, scopes, token)
  }

  private remember(registry: string, scopes: readonly string[], token: CachedToken): CachedToken {
    this.tokens.set(tokenKey(registry, scopes), token)
    return token
  }

  /** Credentials go to a realm over TLS, or to a plain-HTTP host the operator allowed. */
  private mayReceiveCredentials(realm: URL, registry: string): boolean {
    if (realm.protocol === 'https:') return true
    return isPlainHttp(realm.host, this.options.insecureRegistries) || realm.host === registry
  }

  private now(): number {
    return this.options.now ? this.options.now() : Date.now()
  }
}

function readToken(response: TokenResponse, nowMs: number): CachedToken | undefined {
  if (response.status !== 200 || typeof response.body !== 'object' || response.body === null)
    return undefined
  const body = response.body as {
    token?: unknown
    access_token?: unknown
    expires_in?: unknown
    issued_at?: unknown
  }
  const token = typeof body.token === 'string' ? body.token : body.access_token
  if (typeof token !== 'string' || token.length === 0) return undefined

  const lifetimeMs =
    typeof body.expires_in === 'number' && body.expires_in > 0
      ? body.expires_in * 1000
      : DEFAULT_TOKEN_LIFETIME_MS
  // issued_at is the server's clock; the lifetime counts from our receipt to avoid skew.
  return { token, expiresAtMs: nowMs + lifetimeMs }
}

function tokenKey(registry: string, scopes: readonly string[]): string {
  return `${registry} ${[...scopes].sort().join(' ')}`
}

function unauthorized(registry: string, why: string, loginHint: string): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_REGISTRY_UNAUTHORIZED',
    `registry ${registry} refused access: ${why}`,
    { hint: `${loginHint}, or check the repository name` },
  )
}
