import { notImplemented } from './not-implemented.js'
import type { LayerIndex, RandomAccessReader } from './types.js'

/** Options for openLayer. */
export interface OpenLayerOptions {
  /** Expected `sha256:<hex>` of the uncompressed TOC JSON; checked when given. */
  tocDigest?: string
  /** Largest TOC (compressed or uncompressed) accepted, in bytes; default 64 MiB. */
  maxTocBytes?: number
}

/**
 * Reads the footer and TOC of an eStargz, legacy stargz or zstd:chunked blob (either
 * dialect), validates every entry and returns the layer index. Reads only the footer
 * and the TOC through `reader`.
 * Throws EdgestarError with an ESTARGZ_ERRORS code (see error-codes.ts): FOOTER_TRUNCATED,
 * BAD_MAGIC, NO_TOC, TOC_OUT_OF_RANGE, TOC_TOO_LARGE, TOC_CORRUPT, TOC_NOT_JSON,
 * TOC_INVALID, TOC_DIGEST_MISMATCH and the entry validation codes.
 */
export async function openLayer(
  _reader: RandomAccessReader,
  _opts: OpenLayerOptions = {},
): Promise<LayerIndex> {
  return notImplemented('openLayer')
}
