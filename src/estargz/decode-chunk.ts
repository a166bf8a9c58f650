import { EdgestarError } from '../errors.js'
import { type BoundedResult, decompressBounded, decompressBoundedAsync } from './decompress.js'
import { sha256Digest } from './digest.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import type { BlobFormat, ChunkExtent, Compression } from './types.js'

// After a chunk's bytes its compressed range holds tar padding and the headers of the
// entries up to the next chunk. Those compress at most a few dozen to one, so output
// past the chunk beyond this allowance is a decompression bomb, not tar metadata.
const TAIL_ALLOWANCE_BASE_BYTES = 1024 * 1024
const TAIL_ALLOWANCE_RATIO = 64

/** The compression underneath a blob format. */
export function compressionOf(format: BlobFormat | Compression): Compression {
  return format === 'estargz' || format === 'stargz-legacy' || format === 'gzip' ? 'gzip' : 'zstd'
}

/**
 * Decodes one chunk from the `extent.compressedSize` blob bytes that start at
 * `extent.compressedOffset`: decompresses them as a multi-member gzip or multi-frame
 * zstd stream, skips `innerOffset`, keeps exactly `chunkSize` bytes and checks them
 * against `chunkDigest` when the extent has one. Synchronous (it runs the native
 * decoder on the calling thread); memory is bounded by the chunk size plus an allowance
 * for the tar headers that follow it (1 MiB + 64 × the compressed size).
 * Throws CHUNK_CORRUPT (does not decompress, or too few bytes), CHUNK_BOMB (inflates
 * far beyond what it declares) or CHUNK_DIGEST_MISMATCH.
 */
export function decodeChunk(
  format: BlobFormat | Compression,
  compressed: Buffer,
  extent: ChunkExtent,
): Buffer {
  if (extent.isZeros) return verified(Buffer.alloc(extent.chunkSize), extent)
  const limit = decodeLimit(compressed, extent)
  return finish(decompressBounded(compressionOf(format), compressed, limit), extent, limit)
}

/**
 * decodeChunk without blocking the event loop while gzip inflates (zlib's thread pool);
 * zstd chunks still decode on the calling thread. Same result and error codes.
 */
export async function decodeChunkAsync(
  format: BlobFormat | Compression,
  compressed: Buffer,
  extent: ChunkExtent,
): Promise<Buffer> {
  if (extent.isZeros) return verified(Buffer.alloc(extent.chunkSize), extent)
  const limit = decodeLimit(compressed, extent)
  const result = await decompressBoundedAsync(compressionOf(format), compressed, limit)
  return finish(result, extent, limit)
}

function decodeLimit(compressed: Buffer, extent: ChunkExtent): number {
  const allowance = TAIL_ALLOWANCE_BASE_BYTES + TAIL_ALLOWANCE_RATIO * compressed.length
  return extent.innerOffset + extent.chunkSize + allowance
}

function finish(result: BoundedResult, extent: ChunkExtent, limit: number): Buffer {
  const wanted = extent.innerOffset + extent.chunkSize
  if (!result.ok && result.reason === 'exceeded') {
    throw new EdgestarError(
      ESTARGZ_ERRORS.CHUNK_BOMB,
      `chunk of ${describe(extent)} inflates past ${limit} bytes though it declares ${extent.chunkSize}`,
      { hint: 'the blob is hostile or corrupt; do not use this layer' },
    )
  }
  if (!result.ok || result.data.length < wanted) {
    const got = result.ok ? `only ${result.data.length} bytes` : 'no valid stream'
    throw new EdgestarError(
      ESTARGZ_ERRORS.CHUNK_CORRUPT,
      `chunk of ${describe(extent)} decompresses to ${got} (needs ${wanted})`,
      { hint: 'the blob is corrupt or the range read was short; fetch the chunk again' },
    )
  }
  return verified(result.data.subarray(extent.innerOffset, wanted), extent)
}

function verified(data: Buffer, extent: ChunkExtent): Buffer {
  if (!extent.chunkDigest) return data
  const actual = sha256Digest(data)
  if (actual === extent.chunkDigest) return data
  throw new EdgestarError(
    ESTARGZ_ERRORS.CHUNK_DIGEST_MISMATCH,
    `chunk of ${describe(extent)} has digest ${actual}, TOC says ${extent.chunkDigest}`,
    { hint: 'the blob was altered or damaged; fetch the chunk again' },
  )
}

function describe(extent: ChunkExtent): string {
  const name = JSON.stringify(extent.entryName)
  return `${name} at file offset ${extent.chunkOffset} (blob offset ${extent.compressedOffset})`
}
