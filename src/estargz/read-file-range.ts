import { EdgestarError } from '../errors.js'
import { decodeChunkAsync } from './decode-chunk.js'
import { cleanEntryName } from './entry-name.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import { resolveHardlink } from './toc-validate.js'
import type { ChunkExtent, Compression, LayerIndex, RandomAccessReader } from './types.js'

/** A byte range of a file: `offset` from the file start, `length` bytes. */
export interface FileRange {
  offset: number
  length: number
}

/**
 * Turns one chunk's blob bytes (`compressed`, empty for a hole) into its checked bytes,
 * with decodeChunk's contract and error codes. It may take `compressed` over.
 */
export type ChunkDecoder = (
  compression: Compression,
  extent: ChunkExtent,
  compressed: Buffer,
) => Promise<Buffer>

/** What to read of a file (default: all of it) and how to decode its chunks. */
export interface ReadFileRangeOptions extends Partial<FileRange> {
  /**
   * Default: decodeChunkAsync on this thread (gzip inflates on libuv's pool; zstd and the
   * digest check run on the caller's thread). A server that must keep its event loop
   * free passes a decoder that runs elsewhere.
   */
  decode?: ChunkDecoder
}

const decodeHere: ChunkDecoder = (compression, extent, compressed) =>
  decodeChunkAsync(compression, compressed, extent)

/**
 * Reads `offset`/`length` (default: the whole file) of regular file `name` (cleaned like
 * TOC names; a hardlink resolves to its target) by fetching and decoding only the chunks
 * that cover it, through `options.decode`; every chunk is verified against its digest.
 * The range is clipped at the end of the file.
 * Throws FILE_NOT_FOUND, RANGE_INVALID, READ_FAILED (short read) and decodeChunk's codes.
 */
export async function readFileRange(
  reader: RandomAccessReader,
  index: LayerIndex,
  name: string,
  range?: ReadFileRangeOptions,
): Promise<Buffer> {
  const file = resolveHardlink(index.byName, cleanEntryName(name))
  if (file?.type !== 'reg') {
    throw new EdgestarError(
      ESTARGZ_ERRORS.FILE_NOT_FOUND,
      `no regular file ${JSON.stringify(name)} in the layer`,
      {
        hint: 'list the layer with `edgestar inspect --json` to see its files',
      },
    )
  }

  const start = range?.offset ?? 0
  const length = range?.length ?? file.size
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.RANGE_INVALID,
      `range ${start}+${length} of ${JSON.stringify(name)} is invalid`,
      {
        hint: 'give a non-negative offset and length',
      },
    )
  }
  const end = Math.min(file.size, start + length)
  if (end <= start) return Buffer.alloc(0)

  const covering = (index.chunksByName.get(file.name) ?? []).filter(
    (c) => c.chunkOffset < end && c.chunkOffset + c.chunkSize > start,
  )
  const decode = range?.decode ?? decodeHere
  const pieces = await Promise.all(
    covering.map(async (chunk) => {
      const compressed = chunk.isZeros
        ? Buffer.alloc(0)
        : await reader.readAt(chunk.compressedOffset, chunk.compressedSize)
      const data = await decode(index.compression, chunk, compressed)
      const from = Math.max(start, chunk.chunkOffset) - chunk.chunkOffset
      const to = Math.min(end, chunk.chunkOffset + chunk.chunkSize) - chunk.chunkOffset
      return data.subarray(from, to)
    }),
  )
  return Buffer.concat(pieces, end - start)
}
