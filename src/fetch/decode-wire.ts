/**
 * What crosses between the scheduler and its decode thread (`decode-thread.ts`): requests,
 * answers, errors as plain fields, and which memory moves instead of being copied.
 */

import { EdgestarError } from '../errors.js'
import type { ChunkExtent, Compression, LayerFormat } from '../estargz/index.js'
import type { ChunkExtentInput, UnitRow } from '../store/index.js'

/** What the thread needs of a unit's row. */
export type DecodeUnitFields = Pick<UnitRow, 'kind' | 'sizeBytes' | 'chunkDigest'>

/** One unit to decode: its row's fields, its chunk extents and its fetched bytes. */
export interface DecodeItem {
  unit: DecodeUnitFields
  extents: ChunkExtentInput[]
  compressed: Uint8Array
}

/** A failure as it crosses the thread boundary (an Error's own fields are not cloned). */
export interface ErrorWire {
  name: string
  message: string
  code?: string
  hint?: string
}

/** A decoded unit as it comes back: `DecodedUnit` with transferred views. */
export interface DecodedWire {
  object: Uint8Array
  tail: Uint8Array | null
  memberBytes: number
}

/** A request as the thread receives it. */
export type DecodeRequest =
  | { id: number; op: 'decode'; format: LayerFormat; items: DecodeItem[] }
  | { id: number; op: 'hash'; hashId: number; pieces: Uint8Array[]; isLast: boolean }
  | { id: number; op: 'drop-hash'; hashId: number }
  | {
      id: number
      op: 'chunk'
      compression: Compression
      extent: ChunkExtent
      compressed: Uint8Array
    }
  | { id: number; op: 'inflate'; format: LayerFormat; compressed: Uint8Array }

/**
 * An answer: per-unit outcomes of a decode, the digest of a finished hash, the bytes of a
 * chunk or an inflated blob, or an error.
 */
export interface DecodeAnswer {
  id: number
  outcomes?: ({ decoded: DecodedWire } | { error: ErrorWire })[]
  digest?: string
  data?: Uint8Array
  error?: ErrorWire
}

/**
 * The distinct ArrayBuffers behind `views` that can be moved instead of copied. Memory of
 * Node's Buffer pool (allocations under half of `Buffer.poolSize`) is left out: it holds
 * other buffers too, and a small view costs less to copy than to reason about.
 */
export function transferListOf(views: readonly (Uint8Array | null)[]): ArrayBuffer[] {
  const list = new Set<ArrayBuffer>()
  for (const view of views) {
    if (view === null || !(view.buffer instanceof ArrayBuffer)) continue
    if (view.buffer.byteLength > Buffer.poolSize) list.add(view.buffer)
  }
  return [...list]
}

/** An Error, an EdgestarError or anything thrown, as plain fields. */
export function toErrorWire(err: unknown): ErrorWire {
  const fields = err as { name?: unknown; code?: unknown; hint?: unknown; message?: unknown }
  return {
    name: typeof fields.name === 'string' ? fields.name : 'Error',
    message: typeof fields.message === 'string' ? fields.message : String(err),
    ...(typeof fields.code === 'string' ? { code: fields.code } : {}),
    ...(typeof fields.hint === 'string' ? { hint: fields.hint } : {}),
  }
}

/** An ErrorWire as an error again: an EdgestarError keeps its code and hint. */
export function fromErrorWire(wire: ErrorWire): Error {
  if (wire.name === 'EdgestarError' && wire.code !== undefined)
    return new EdgestarError(
      wire.code,
      wire.message,
      wire.hint === undefined ? {} : { hint: wire.hint },
    )
  const err = new Error(wire.message) as Error & { code?: string }
  err.name = wire.name
  if (wire.code !== undefined) err.code = wire.code
  return err
}
