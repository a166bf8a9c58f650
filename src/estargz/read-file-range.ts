import { notImplemented } from './not-implemented.js'
import type { LayerIndex, RandomAccessReader } from './types.js'

/** A byte range of a file: `offset` from the file start, `length` bytes. */
export interface FileRange {
  offset: number
  length: number
}

/**
 * Reads `range` (default: the whole file) of regular file `name` (a hardlink resolves
 * to its target) by fetching and decoding only the chunks that cover it; every chunk
 * is verified against its digest. The range is clipped at the end of the file.
 * Throws FILE_NOT_FOUND, RANGE_INVALID and the decodeChunk codes.
 */
export async function readFileRange(
  _reader: RandomAccessReader,
  _index: LayerIndex,
  _name: string,
  _range?: FileRange,
): Promise<Buffer> {
  return notImplemented('readFileRange')
}
