import type { RandomAccessReader } from '../estargz/types.js'
import type { ByteRange } from './types.js'

/**
 * Random access to one registry blob by HTTP Range. Reads are retried, resumed and
 * checked for length; adjacent ranges passed together to `readRanges` go out as one
 * request up to the client's coalescing limit. Throws EDGESTAR_REGISTRY_* errors.
 */
export interface BlobReader extends RandomAccessReader {
  readonly digest: string
  /** Reads several ranges; result i holds the bytes of ranges[i] (short only at blob end). */
  readRanges(ranges: readonly ByteRange[]): Promise<Buffer[]>
}
