import { EdgestarError } from '../errors.js'

/** Options every command accepts that change how results are printed. */
export interface OutputOptions {
  json?: boolean
}

/** The error part of a failed command's JSON body, and what the text form prints. */
export interface ErrorBody {
  code: string
  message: string
  hint?: string
}

/**
 * Prints a command's result: with --json, the object on one line with `ok: true` added
 * in front unless the value says `ok` itself (a value with `ok: false` carries
 * `error: {code, message, hint}`, see README "JSON output"); else the human text.
 * `value` must be an object, never an array: every JSON result is one object.
 */
export function printResult(options: OutputOptions, value: object, human: () => string): void {
  if (options.json) {
    if (Array.isArray(value)) throw new Error('a JSON result must be an object, not an array')
    const body = 'ok' in value ? value : { ok: true, ...value }
    process.stdout.write(`${JSON.stringify(body)}\n`)
    return
  }
  const text = human()
  if (text.length > 0) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
}

/** Prints `error CODE: message` and `hint: ...` on stderr, the text form of a failure. */
export function printErrorText(error: ErrorBody): void {
  process.stderr.write(`error ${error.code}: ${error.message}\n`)
  if (error.hint) process.stderr.write(`hint: ${error.hint}\n`)
}

/**
 * Prints an error the way every command does (code, message, hint; JSON with --json)
 * and returns the process exit code. Stacks only with EDGESTAR_DEBUG=1.
 */
export function reportError(err: unknown, json: boolean): number {
  const body: ErrorBody =
    err instanceof EdgestarError
      ? err.toJSON()
      : {
          code: 'EDGESTAR_INTERNAL',
          message: err instanceof Error ? err.message : String(err),
          hint: 'this is a bug in edgestar; please report it with EDGESTAR_DEBUG=1 output',
        }

  if (json) process.stdout.write(`${JSON.stringify({ ok: false, error: body })}\n`)
  else printErrorText(body)
  if (process.env.EDGESTAR_DEBUG === '1' && err instanceof Error)
    process.stderr.write(`${err.stack}\n`)
  return 1
}

/** True when stderr is a terminal, so progress bars make sense. */
export function isInteractive(): boolean {
  return Boolean(process.stderr.isTTY) && process.env.CI !== 'true'
}
