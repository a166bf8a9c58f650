import { EdgestarError } from '../errors.js'
import { decodeChunkAsync } from './decode-chunk.js'
import { cleanEntryName } from './entry-name.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import { resolveHardlink } from './toc-validate.js'
import type { LayerIndex, RandomAccessReader } from './types.js'

/** A byte range of a file: `offset` from the file start, `length` bytes. */
export interface FileRange {
  offset: number
  length: number
}

/**
 * Reads `range` (default: the whole file) of regular file `name` (cleaned like TOC
 * names; a hardlink resolves to its target) by fetching and decoding only the chunks
 * that cover it; every chunk is verified against its digest. The range is clipped at the end of the file.
 * Throws FILE_NOT_FOUND, RANGE_INVALID, READ_FAILED (short read) and decodeChunk's codes.
 */
export async function readFileRange(
  reader: RandomAccessReader,
  index: LayerIndex,
  name: string,
  range?: FileRange,
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
  const pieces = await Promise.all(
    covering.map(async (chunk) => {
      const compressed = chunk.isZeros
        ? Buffer.alloc(0)
        : await reader.readAt(chunk.compressedOffset, chunk.compressedSize)
      const data = await decodeChunkAsync(index.compression, compressed, chunk)
      const from = Math.max(start, chunk.chunkOffset) - chunk.chunkOffset
      const to = Math.min(end, chunk.chunkOffset + chunk.chunkSize) - chunk.chunkOffset
      return data.subarray(from, to)
    }),
  )
  return Buffer.concat(pieces, end - start)
}
