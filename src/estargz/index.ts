/**
 * The eStargz format layer's public API: open a layer blob (gzip eStargz, legacy stargz,
 * zstd:chunked in both dialects), read its validated TOC and chunk extents, decode and
 * verify chunks, read file ranges, and stream the whole layer for diffID checks.
 * It does no I/O of its own beyond the RandomAccessReader handed in (FileReader is the
 * local-file one).
 */

export * from './convert.js'
export { compressionOf, decodeChunk, decodeChunkAsync } from './decode-chunk.js'
export { checkDigestOption, isSha256Digest, sha256Digest, sha256Hasher } from './digest.js'
export { cleanEntryName } from './entry-name.js'
export { ESTARGZ_ERRORS, type EstargzErrorCode } from './error-codes.js'
export { FileReader } from './file-reader.js'
export {
  decompressedStream,
  detectLayerFormat,
  type LayerStreamResult,
  type LayerTarEntry,
  type TarEntryType,
  walkLayer,
} from './layer-stream.js'
export { type OpenLayerOptions, openLayer } from './open-layer.js'
export {
  type ChunkDecoder,
  type FileRange,
  type ReadFileRangeOptions,
  readFileRange,
} from './read-file-range.js'
export {
  isTarMetaType,
  parsePaxRecords,
  parseTarHeader,
  readTarNumber,
  TAR_ENTRY_TYPES,
  type TarCorrupt,
  type TarHeader,
  type TarMeta,
  tarChecksumMatches,
  tarCString,
  walkTar,
} from './tar-walk.js'
export { DEFAULT_MAX_TOC_BYTES } from './toc-reader.js'
export { resolveHardlink } from './toc-validate.js'
export * from './types.js'
export {
  assertDiffId,
  type VerifyLayerOptions,
  type VerifyProblem,
  type VerifyReport,
  verifyLayer,
} from './verify-layer.js'
