import { EdgestarError } from '../errors.js'

/** Options every command accepts that change how results are printed. */
export interface OutputOptions {
  json?: boolean
}

/** Prints a command's result: JSON on one line for scripts, or the human text. */
export function printResult(options: OutputOptions, value: unknown, human: () => string): void {
  if (options.json) {
    process.stdout.write(`${JSON.stringify(value)}\n`)
    return
  }
  const text = human()
  if (text.length > 0) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
}

/**
 * Prints an error the way every command does (code, message, hint; JSON with --json)
 * and returns the process exit code. Stacks only with EDGESTAR_DEBUG=1.
 */
export function reportError(err: unknown, json: boolean): number {
  const known = err instanceof EdgestarError
  const body = known
    ? err.toJSON()
    : { code: 'EDGESTAR_INTERNAL', message: err instanceof Error ? err.message : String(err) }

  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: body })}\n`)
  } else {
    process.stderr.write(`error ${body.code}: ${body.message}\n`)
    if ('hint' in body && body.hint) process.stderr.write(`hint: ${body.hint}\n`)
    if (!known)
      process.stderr.write(
        'hint: this is a bug in edgestar; please report it with EDGESTAR_DEBUG=1 output\n',
      )
  }
  if (process.env.EDGESTAR_DEBUG === '1' && err instanceof Error)
    process.stderr.write(`${err.stack}\n`)
  return 1
}

/** True when stderr is a terminal, so progress bars make sense. */
export function isInteractive(): boolean {
  return Boolean(process.stderr.isTTY) && process.env.CI !== 'true'
}
