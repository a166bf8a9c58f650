import { dirname } from 'node:path'
import { EdgestarError } from '../errors.js'

/**
 * Every error code the converter throws. Each names one condition; messages say on
 * what (input path, entry name, option).
 */
export const CONVERT_ERRORS = {
  /** The input path does not exist or cannot be read. */
  INPUT_UNREADABLE: 'EDGESTAR_CONVERT_INPUT_UNREADABLE',
  /** A file or directory of the input may not be read by this user (EACCES, EPERM). */
  INPUT_PERMISSION_DENIED: 'EDGESTAR_CONVERT_INPUT_PERMISSION_DENIED',
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
  /** The output could not be written (the message names the errno, e.g. ENOSPC). */
  OUTPUT_FAILED: 'EDGESTAR_CONVERT_OUTPUT_FAILED',
  /** OUT of a registry INPUT (a directory for the converted blobs) is not a directory. */
  OUTPUT_NOT_DIRECTORY: 'EDGESTAR_CONVERT_OUTPUT_NOT_DIRECTORY',
  /** A required argument is missing (OUT without --push). */
  MISSING_ARGUMENT: 'EDGESTAR_CONVERT_MISSING_ARGUMENT',
  /** A compression worker failed. */
  COMPRESS_FAILED: 'EDGESTAR_CONVERT_COMPRESS_FAILED',
} as const

/** One of the converter's error codes. */
export type ConvertErrorCode = (typeof CONVERT_ERRORS)[keyof typeof CONVERT_ERRORS]

/**
 * The error for an input path that cannot be read: INPUT_PERMISSION_DENIED for EACCES
 * and EPERM (with what to do about it), else INPUT_UNREADABLE. `doing` says what failed
 * ("open", "list", "stat", "read the link").
 */
export function inputError(path: string, doing: string, cause: unknown): EdgestarError {
  const code = errnoOf(cause)
  if (code === 'EACCES' || code === 'EPERM')
    return new EdgestarError(
      CONVERT_ERRORS.INPUT_PERMISSION_DENIED,
      `cannot ${doing} ${path}: permission denied (${code})`,
      {
        hint:
          'run the conversion as a user that can read the whole tree (root, or its owner), ' +
          'or make it readable (chmod -R a+rX); a layer must carry every file',
        cause,
      },
    )
  return new EdgestarError(
    CONVERT_ERRORS.INPUT_UNREADABLE,
    `cannot ${doing} ${path}${code ? ` (${code})` : ''}`,
    { hint: 'check that the path exists and is readable', cause },
  )
}

/**
 * The OUTPUT_FAILED error for `path` (as the user named it), with the errno in the
 * message and a hint for the usual causes: a full disk, a missing directory, a
 * directory in the way, no permission, a read-only file system.
 */
export function outputError(path: string, cause: unknown): EdgestarError {
  const code = errnoOf(cause)
  const detail = code ? `: ${code}${reasonOf(cause)}` : ''
  return new EdgestarError(CONVERT_ERRORS.OUTPUT_FAILED, `cannot write output ${path}${detail}`, {
    hint: outputHint(path, code),
    cause,
  })
}

function outputHint(path: string, code: string | undefined): string {
  const dir = dirname(path)
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return `the file system holding ${dir} is full (or over quota); free space or write elsewhere`
    case 'ENOENT':
    case 'ENOTDIR':
      return `the directory ${dir} does not exist; create it first (mkdir -p ${dir})`
    case 'EISDIR':
      return `${path} is a directory; give a file name for the blob, e.g. ${path}/layer.tar.gz`
    case 'EACCES':
    case 'EPERM':
      return `this user may not write in ${dir}; pick a writable directory or fix its permissions`
    case 'EROFS':
      return `${dir} is on a read-only file system; write the blob elsewhere`
    default:
      return 'check that the output directory exists, is writable and has space'
  }
}

function errnoOf(cause: unknown): string | undefined {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

// "ENOSPC: no space left on device, write" → " (no space left on device)".
function reasonOf(cause: unknown): string {
  const message = cause instanceof Error ? cause.message : ''
  const match = /^E[A-Z]+: ([^,]+)/.exec(message)
  return match ? ` (${match[1]})` : ''
}
