/**
 * The converter's public API: turn a directory, a tar, or a gzip/zstd-compressed tar
 * into a gzip eStargz or zstd:chunked layer blob the reference implementation reads.
 */

import type { ConvertOptions, ConvertResult } from './convert-types.js'
import { notImplemented } from './not-implemented.js'

export { CONVERT_ERRORS, type ConvertErrorCode } from './convert-errors.js'
export * from './convert-types.js'

/**
 * Converts `inputPath` (directory, tar, tar.gz or tar.zst) into a layer blob at
 * `outPath` (written to a temporary name, then renamed). Streams chunk by chunk:
 * memory holds the entry metadata and a few chunks in flight, never the layer.
 * Throws EdgestarError with a CONVERT_ERRORS code (input, option, output problems).
 */
export async function convertLayer(
  inputPath: string,
  outPath: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  void inputPath
  void outPath
  void options
  return notImplemented('convertLayer')
}
