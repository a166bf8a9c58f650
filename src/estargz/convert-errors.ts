/**
 * Every error code the converter throws. Each names one condition; messages say on
 * what (input path, entry name, option).
 */
export const CONVERT_ERRORS = {
  /** The input path does not exist or cannot be read. */
  INPUT_UNREADABLE: 'EDGESTAR_CONVERT_INPUT_UNREADABLE',
  /** The input is neither a directory nor a (gzip/zstd-compressed) tar. */
  INPUT_UNSUPPORTED: 'EDGESTAR_CONVERT_INPUT_UNSUPPORTED',
  /** The input tar is malformed (bad checksum, truncated entry, bad PAX record). */
  TAR_CORRUPT: 'EDGESTAR_CONVERT_TAR_CORRUPT',
  /** An entry cannot be represented (socket, unknown tar type, device number too big). */
  ENTRY_UNSUPPORTED: 'EDGESTAR_CONVERT_ENTRY_UNSUPPORTED',
  /** A hardlink in the input names an entry the input does not have. */
  HARDLINK_MISSING: 'EDGESTAR_CONVERT_HARDLINK_MISSING',
  /** A file changed size while it was being converted. */
  FILE_CHANGED: 'EDGESTAR_CONVERT_FILE_CHANGED',
  /** An option is out of range or malformed (chunk size, level, format). */
  BAD_OPTION: 'EDGESTAR_CONVERT_BAD_OPTION',
  /** A prioritized path is not in the input. */
  PRIORITIZED_MISSING: 'EDGESTAR_CONVERT_PRIORITIZED_MISSING',
  /** The output could not be written. */
  OUTPUT_FAILED: 'EDGESTAR_CONVERT_OUTPUT_FAILED',
  /** A compression worker failed. */
  COMPRESS_FAILED: 'EDGESTAR_CONVERT_COMPRESS_FAILED',
} as const

/** One of the converter's error codes. */
export type ConvertErrorCode = (typeof CONVERT_ERRORS)[keyof typeof CONVERT_ERRORS]
