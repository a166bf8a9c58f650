import { createHash } from 'node:crypto'
import { EdgestarError } from '../errors.js'
import { ESTARGZ_ERRORS } from './error-codes.js'

const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/

/** `sha256:<hex>` of `data`. */
export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

/** True when `value` is a well-formed `sha256:<64 lowercase hex>` digest. */
export function isSha256Digest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST_PATTERN.test(value)
}

/**
 * Checks a digest given by a caller (CLI option, annotation) and returns it.
 * Throws DIGEST_INVALID naming `what`.
 */
export function checkDigestOption(value: string, what: string): string {
  if (isSha256Digest(value)) return value
  throw new EdgestarError(ESTARGZ_ERRORS.DIGEST_INVALID, `${what} "${value}" is not a digest`, {
    hint: 'give it as sha256:<64 lowercase hex digits>',
  })
}

/** Incremental sha256 giving the `sha256:<hex>` form, for streaming digests. */
export function sha256Hasher(): { update(data: Uint8Array): void; digest(): string } {
  const hash = createHash('sha256')
  return {
    update: (data) => void hash.update(data),
    digest: () => `sha256:${hash.digest('hex')}`,
  }
}
