import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { EdgestarError } from '../errors.js'

/** The message kinds that have a JSON Schema in `schemas/NAME.schema.json`. */
export type MessageKind = 'command' | 'result' | 'status' | 'telemetry' | 'event'

/** Every kind, in the order the schemas reference each other (status before telemetry). */
export const MESSAGE_KINDS: readonly MessageKind[] = [
  'command',
  'result',
  'status',
  'telemetry',
  'event',
]

/** The outcome of validating one message. */
export type Validation = { ok: true } | { ok: false; message: string }

// TODO(mqtt): the schemas are read from disk at start, so a single-executable build must
// ship `schemas/` beside the binary (or embed them) or the bridge will not start.
/**
 * Finds the `schemas/` folder by walking up from this file, so the same code works from
 * `src/mqtt/` (tsx, tests) and from `dist/src/mqtt/` (the built CLI).
 */
export function findSchemasDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let depth = 0; depth < 6; depth++) {
    const candidate = join(dir, 'schemas')
    if (existsSync(join(candidate, 'command.schema.json'))) return candidate
    dir = dirname(dir)
  }
  throw new EdgestarError('EDGESTAR_MQTT_SCHEMAS_MISSING', 'message schemas not found', {
    hint: 'the schemas/ folder must ship beside src/ or dist/; reinstall edgestar',
  })
}

/**
 * Compiled validators for every fleet message (Ajv, draft-07, all errors). Loaded once
 * per process; compiling the five schemas takes a few milliseconds.
 */
export class MessageSchemas {
  readonly #validators = new Map<MessageKind, ValidateFunction>()

  constructor(schemasDir: string = findSchemasDir()) {
    const ajv = new Ajv({
      allErrors: true,
      discriminator: true,
      strict: true,
      strictRequired: false,
    })
    for (const kind of MESSAGE_KINDS) {
      const text = readFileSync(join(schemasDir, `${kind}.schema.json`), 'utf8')
      ajv.addSchema(JSON.parse(text) as object, kind)
    }
    for (const kind of MESSAGE_KINDS) this.#validators.set(kind, ajv.getSchema(kind)!)
  }

  /** Validates `value` against the schema of `kind`; the message lists what is wrong. */
  validate(kind: MessageKind, value: unknown): Validation {
    const validator = this.#validators.get(kind)!
    if (validator(value)) return { ok: true }
    return { ok: false, message: describeErrors(validator.errors ?? []) }
  }

  /** Throws EDGESTAR_MQTT_MESSAGE_INVALID when `value` does not match its schema. */
  assert(kind: MessageKind, value: unknown): void {
    const outcome = this.validate(kind, value)
    if (outcome.ok) return
    throw new EdgestarError(
      'EDGESTAR_MQTT_MESSAGE_INVALID',
      `${kind} message does not match schemas/${kind}.schema.json: ${outcome.message}`,
    )
  }
}

let shared: MessageSchemas | undefined

/** The process-wide validators (compiled on first use). */
export function messageSchemas(): MessageSchemas {
  shared ??= new MessageSchemas()
  return shared
}

function describeErrors(errors: ErrorObject[]): string {
  const parts = errors.slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}`)
  if (errors.length > 5) parts.push(`and ${errors.length - 5} more`)
  return parts.join('; ')
}
