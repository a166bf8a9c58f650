import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { MESSAGE_KINDS, type MessageKind, messageSchemas } from '../../src/mqtt/schemas.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')

describe('docs/telemetry.md', () => {
  test('every example validates against the schema it is labelled with', async () => {
    const text = await readFile(join(ROOT, 'docs', 'telemetry.md'), 'utf8')
    const examples = [...text.matchAll(/<!-- schema: (\w+) -->\s*```json\n([\s\S]*?)```/g)]
    const kinds = new Set<string>()
    for (const [, kind, json] of examples) {
      assert.ok(MESSAGE_KINDS.includes(kind as MessageKind), `unknown schema label ${kind}`)
      const outcome = messageSchemas().validate(kind as MessageKind, JSON.parse(json!))
      assert.ok(outcome.ok, `${kind} example invalid: ${outcome.ok ? '' : outcome.message}`)
      kinds.add(kind!)
    }
    assert.deepEqual([...kinds].sort(), [...MESSAGE_KINDS].sort(), 'every kind has an example')
  })
})
