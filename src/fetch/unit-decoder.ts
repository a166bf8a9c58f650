import { gunzipSync } from 'node:zlib'
import { decompress as zstdDecompress } from 'zstd-napi'
// NOTE: past estargz's index on purpose. This module runs on the decode thread, and the
// index would load the converter and tar code there too: 8 MB more resident per process.
import { decodeChunk } from '../estargz/decode-chunk.js'
import type { ChunkExtent, LayerFormat } from '../estargz/index.js'
import type { ChunkExtentInput, UnitRow } from '../store/index.js'

/** A decoded fetch unit, ready for the chunk cache. */
export interface DecodedUnit {
  /** What goes into the cache: the chunk's bytes, or the whole decoded unit. */
  object: Buffer
  /** Decoded bytes after a single chunk (tar padding, next headers); null for others. */
  tail: Buffer | null
  /** Decoded size of the whole unit. */
  memberBytes: number
}

// Headers and padding after a chunk are small; anything past this is a bomb.
const TAIL_ALLOWANCE_BYTES = 16 * 1024 * 1024

/**
 * Decodes one fetched unit and verifies it: every chunk extent through estargz's
 * `decodeChunk` (which checks the chunk digest when the TOC has one). Gap units cannot
 * be checked on their own; the layer's diffID covers them. Throws the decodeChunk codes
 * (EDGESTAR_ESTARGZ_CHUNK_DIGEST_MISMATCH, _CHUNK_CORRUPT, _CHUNK_BOMB).
 * CPU-bound and synchronous (up to 13 ms for one unit of the Debian layer): the scheduler
 * runs it on its decode thread (`DecodeWorker`), never on the event loop.
 */
export function decodeUnit(
  format: LayerFormat,
  unit: Pick<UnitRow, 'kind' | 'sizeBytes' | 'chunkDigest'>,
  extents: readonly ChunkExtentInput[],
  compressed: Buffer,
): DecodedUnit {
  if (unit.kind === 'gap') {
    const object = decompressAll(format, compressed, unit.sizeBytes * 1024 + TAIL_ALLOWANCE_BYTES)
    return { object, tail: null, memberBytes: object.length }
  }

  // Units with no chunk digest at all (legacy stargz, plain tars) are checked through
  // the layer's diffID instead; decoding each file of a plain tar again would be quadratic.
  // TODO(fetch): a plain tar layer refetched after an eviction is one unit, read and
  // decompressed in memory whole; a layer of hundreds of MB needs that much RAM once.
  if (extents.every((extent) => !extent.chunkDigest)) {
    const object = decompressAll(format, compressed, Number.MAX_SAFE_INTEGER)
    return { object, tail: null, memberBytes: object.length }
  }

  const checked = extents.map((extent) =>
    decodeChunk(
      blobFormatOf(format),
      compressed.subarray(0, extent.compressedSize),
      toExtent(extent),
    ),
  )
  const declared = extents.reduce((max, e) => Math.max(max, e.innerOffset + e.chunkSize), 0)
  const whole = decompressAll(format, compressed, declared + TAIL_ALLOWANCE_BYTES)

  // A single chunk at the start of its unit is stored alone so other layers can share it.
  if (unit.chunkDigest !== null && extents.length === 1 && checked[0] !== undefined)
    return {
      object: checked[0],
      tail: whole.subarray(extents[0]!.chunkSize),
      memberBytes: whole.length,
    }
  return { object: whole, tail: null, memberBytes: whole.length }
}

function toExtent(extent: ChunkExtentInput): ChunkExtent {
  const out: ChunkExtent = {
    entryName: extent.entryName,
    chunkOffset: extent.chunkOffset,
    chunkSize: extent.chunkSize,
    compressedOffset: extent.compressedOffset,
    compressedSize: extent.compressedSize,
    innerOffset: extent.innerOffset,
  }
  if (extent.chunkDigest) out.chunkDigest = extent.chunkDigest
  return out
}

function blobFormatOf(format: LayerFormat): Parameters<typeof decodeChunk>[0] {
  if (format === 'gzip') return 'gzip'
  if (format === 'zstd') return 'zstd'
  return format
}

/** Decompresses a run of gzip members or zstd frames (skippable frames skipped). */
export function decompressAll(format: LayerFormat, compressed: Buffer, maxBytes: number): Buffer {
  if (compressed.length === 0) return compressed
  if (format.startsWith('zstd')) {
    const out = zstdDecompress(compressed)
    if (out.length > maxBytes) throw new RangeError(`unit inflates to ${out.length} bytes`)
    return out
  }
  return gunzipSync(compressed, { maxOutputLength: Math.min(maxBytes, 2 ** 31 - 1) })
}
