import { EdgestarError, redactUrl } from '../errors.js'
import type { RegistryTransport, TransportResponse } from './transport.js'

/**
 * Turns an unexpected registry response into an EdgestarError, reading the registry's
 * JSON error list for the message. Codes: EDGESTAR_REGISTRY_NOT_FOUND (404),
 * EDGESTAR_REGISTRY_UNAUTHORIZED (401), EDGESTAR_REGISTRY_DENIED (403),
 * EDGESTAR_REGISTRY_SERVER_ERROR (5xx, 429), EDGESTAR_REGISTRY_BAD_RESPONSE (others).
 * Consumes the body.
 */
export async function responseError(
  transport: RegistryTransport,
  res: TransportResponse,
  what: string,
): Promise<EdgestarError> {
  const body = await transport.discard(res)
  const detail = registryErrorDetail(body)
  const where = `${what} (${redactUrl(res.url)})`
  const suffix = detail ? `: ${detail}` : ''

  if (res.status === 404) {
    return new EdgestarError('EDGESTAR_REGISTRY_NOT_FOUND', `${where} not found${suffix}`, {
      hint: 'check the repository, tag or digest',
    })
  }
  if (res.status === 401) {
    return new EdgestarError(
      'EDGESTAR_REGISTRY_UNAUTHORIZED',
      `${where}: authentication refused${suffix}`,
      {
        hint: `${transport.auth.loginHint()}, or check the credentials`,
      },
    )
  }
  if (res.status === 403) {
    return new EdgestarError('EDGESTAR_REGISTRY_DENIED', `${where}: access denied${suffix}`, {
      hint: 'the credentials are valid but lack permission for this repository',
    })
  }
  if (res.status >= 500 || res.status === 429) {
    return new EdgestarError(
      'EDGESTAR_REGISTRY_SERVER_ERROR',
      `${where}: registry answered ${res.status}${suffix}`,
      {
        hint: 'the registry is failing; edgestar retried with backoff; try again later',
      },
    )
  }
  return new EdgestarError(
    'EDGESTAR_REGISTRY_BAD_RESPONSE',
    `${where}: unexpected status ${res.status}${suffix}`,
  )
}

/** `CODE: message` of the first entry of a registry JSON error body (distribution spec). */
function registryErrorDetail(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as {
      errors?: { code?: unknown; message?: unknown }[]
    }
    const first = parsed.errors?.[0]
    if (!first) return undefined
    const text = `${String(first.code ?? '')}: ${String(first.message ?? '')}`
    return text.length > 200 ? `${text.slice(0, 200)}…` : text
  } catch {
    return undefined
  }
}
