/**
 * Every error code the format layer throws, so callers and tests branch on a constant.
 * Each names one condition; messages say on what (blob offset, entry name, digest).
 */
export const ESTARGZ_ERRORS = {
  /** The blob is too short to hold a footer, or the footer could not be read whole. */
  FOOTER_TRUNCATED: 'EDGESTAR_ESTARGZ_FOOTER_TRUNCATED',
  /** The blob ends in no footer edgestar knows (and is no plain gzip/zstd tar either). */
  BAD_MAGIC: 'EDGESTAR_ESTARGZ_BAD_MAGIC',
  /** A plain gzip/zstd tar: no footer, no TOC, so it can only be read whole. */
  NO_TOC: 'EDGESTAR_ESTARGZ_NO_TOC',
  /** The footer points the TOC outside the blob. */
  TOC_OUT_OF_RANGE: 'EDGESTAR_ESTARGZ_TOC_OUT_OF_RANGE',
  /** The TOC is bigger than the configured limit; refused before it is read. */
  TOC_TOO_LARGE: 'EDGESTAR_ESTARGZ_TOC_TOO_LARGE',
  /** The TOC stream does not decompress, or its tar wrapper is wrong. */
  TOC_CORRUPT: 'EDGESTAR_ESTARGZ_TOC_CORRUPT',
  /** The TOC bytes are not JSON. */
  TOC_NOT_JSON: 'EDGESTAR_ESTARGZ_TOC_NOT_JSON',
  /** The TOC is JSON but not a valid TOC (field types, entry types, version, order). */
  TOC_INVALID: 'EDGESTAR_ESTARGZ_TOC_INVALID',
  /** The TOC's sha256 differs from the expected TOC digest. */
  TOC_DIGEST_MISMATCH: 'EDGESTAR_ESTARGZ_TOC_DIGEST_MISMATCH',
  /** An entry name (or hardlink target) climbs out of the layer root, or holds a NUL. */
  NAME_ESCAPE: 'EDGESTAR_ESTARGZ_NAME_ESCAPE',
  /** Two entries clean to the same name. */
  DUPLICATE_NAME: 'EDGESTAR_ESTARGZ_DUPLICATE_NAME',
  /** A hardlink names an entry that is not in the TOC. */
  HARDLINK_MISSING: 'EDGESTAR_ESTARGZ_HARDLINK_MISSING',
  /** Hardlinks point at each other in a loop. */
  HARDLINK_CYCLE: 'EDGESTAR_ESTARGZ_HARDLINK_CYCLE',
  /** A hardlink names a directory. */
  HARDLINK_TO_DIR: 'EDGESTAR_ESTARGZ_HARDLINK_TO_DIR',
  /** A file's chunks leave bytes of the file uncovered. */
  CHUNK_GAP: 'EDGESTAR_ESTARGZ_CHUNK_GAP',
  /** A file's chunks cover some bytes twice or run past the file's end. */
  CHUNK_OVERLAP: 'EDGESTAR_ESTARGZ_CHUNK_OVERLAP',
  /** A chunk's compressed stream starts outside the blob's data area (before the TOC). */
  OFFSET_OUT_OF_RANGE: 'EDGESTAR_ESTARGZ_OFFSET_OUT_OF_RANGE',
  /** A size, offset or count is negative, not an integer, or beyond sane limits. */
  ABSURD_SIZE: 'EDGESTAR_ESTARGZ_ABSURD_SIZE',
  /** A chunk's uncompressed bytes do not match its chunkDigest. */
  CHUNK_DIGEST_MISMATCH: 'EDGESTAR_ESTARGZ_CHUNK_DIGEST_MISMATCH',
  /** A file's content does not match its whole-file digest. */
  FILE_DIGEST_MISMATCH: 'EDGESTAR_ESTARGZ_FILE_DIGEST_MISMATCH',
  /** A chunk's compressed bytes inflate far beyond what the chunk declares. */
  CHUNK_BOMB: 'EDGESTAR_ESTARGZ_CHUNK_BOMB',
  /** A chunk's compressed bytes do not decompress, or hold fewer bytes than declared. */
  CHUNK_CORRUPT: 'EDGESTAR_ESTARGZ_CHUNK_CORRUPT',
  /** The whole decompressed stream does not hash to the expected diffID. */
  DIFFID_MISMATCH: 'EDGESTAR_ESTARGZ_DIFFID_MISMATCH',
  /** The decompressed layer stream is corrupt (bad compression or tar). */
  STREAM_CORRUPT: 'EDGESTAR_ESTARGZ_STREAM_CORRUPT',
  /** No regular file (or hardlink to one) of that name in the layer. */
  FILE_NOT_FOUND: 'EDGESTAR_ESTARGZ_FILE_NOT_FOUND',
  /** A byte range outside the file was asked for. */
  RANGE_INVALID: 'EDGESTAR_ESTARGZ_RANGE_INVALID',
  /** The blob could not be read (local file I/O). */
  READ_FAILED: 'EDGESTAR_ESTARGZ_READ_FAILED',
  /** A digest string is not `sha256:<64 hex>`. */
  DIGEST_INVALID: 'EDGESTAR_ESTARGZ_DIGEST_INVALID',
} as const

/** One of the format layer's error codes. */
export type EstargzErrorCode = (typeof ESTARGZ_ERRORS)[keyof typeof ESTARGZ_ERRORS]
