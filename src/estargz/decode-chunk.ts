import { notImplemented } from './not-implemented.js'
import type { BlobFormat, ChunkExtent, Compression } from './types.js'

/**
 * Decodes one chunk from the `extent.compressedSize` blob bytes that start at
 * `extent.compressedOffset`: decompresses them as a multi-member gzip or multi-frame
 * zstd stream, skips `innerOffset`, keeps exactly `chunkSize` bytes and checks them
 * against `chunkDigest` when the extent has one. Synchronous; memory is bounded by the
 * chunk size plus a small allowance for the tar headers that follow the chunk.
 * Throws CHUNK_CORRUPT (does not decompress, or too few bytes), CHUNK_BOMB (inflates far
 * beyond what it declares) or CHUNK_DIGEST_MISMATCH.
 */
export function decodeChunk(
  _format: BlobFormat | Compression,
  _compressed: Buffer,
  _extent: ChunkExtent,
): Buffer {
  return notImplemented('decodeChunk')
}
