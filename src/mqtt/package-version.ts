import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { findSchemasDir } from './schemas.js'

let cached: string | undefined

/** edgestar's version from the package.json beside `schemas/`; `0.0.0` when unreadable. */
export function packageVersion(): string {
  if (cached !== undefined) return cached
  try {
    const text = readFileSync(join(dirname(findSchemasDir()), 'package.json'), 'utf8')
    const version = (JSON.parse(text) as { version?: unknown }).version
    cached = typeof version === 'string' ? version : '0.0.0'
  } catch {
    cached = '0.0.0'
  }
  return cached
}
