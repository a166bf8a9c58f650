/**
 * The one error type edgestar throws on purpose. Callers branch on `code`, which is
 * stable across releases (`EDGESTAR_<AREA>_<CONDITION>`); `message` says what failed
 * and on what, `hint` says what the operator can do about it.
 */
export class EdgestarError extends Error {
  readonly code: string
  readonly hint: string | undefined

  constructor(code: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'EdgestarError'
    this.code = code
    this.hint = options.hint
  }

  /** A plain object for JSON output and structured logs (no stack). */
  toJSON(): { code: string; message: string; hint?: string } {
    return this.hint === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, hint: this.hint }
  }
}

/** True when `err` is an EdgestarError, optionally with the given code. */
export function isEdgestarError(err: unknown, code?: string): err is EdgestarError {
  return err instanceof EdgestarError && (code === undefined || err.code === code)
}

/** Removes user info and token-like query parameters from a URL before it is shown. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.username = ''
    parsed.password = ''
    for (const key of [...parsed.searchParams.keys()]) {
      if (/token|signature|sig|key|credential|auth/i.test(key))
        parsed.searchParams.set(key, 'REDACTED')
    }
    return parsed.toString()
  } catch {
    return '<unparseable URL>'
  }
}
