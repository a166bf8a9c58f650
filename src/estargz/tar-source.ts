/**
 * The converter's view of its input: an ordered list of entries with their metadata,
 * each able to stream its content on demand. A directory walk and a tar index both
 * produce this, so the writer never knows where bytes come from. Only metadata stays
 * in memory (like the TOC it becomes); content is read chunk by chunk when written.
 */

/** Entry types a layer carries (the TOC's names, without `chunk`). */
export type SourceEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo'

/** One input entry, as it will appear in the output tar and TOC. */
export interface SourceEntry {
  /** Tar header name as given (directories end in `/` when read from a directory). */
  name: string
  type: SourceEntryType
  /** Permission bits plus setuid/setgid/sticky (the tar header mode, & 0o7777). */
  mode: number
  uid: number
  gid: number
  userName: string
  groupName: string
  /** Modification time in whole seconds since the epoch. */
  mtimeSec: number
  /** Symlink target, or the name of a hardlink's target entry. */
  linkName: string
  devMajor: number
  devMinor: number
  /** Content length; 0 for everything but `reg`. */
  sizeBytes: number
  /** Extended attributes, name → raw value. */
  xattrs: ReadonlyMap<string, Buffer>
  /**
   * Streams exactly `sizeBytes` of content in pieces of at most `pieceBytes`, each read
   * into `alloc(n)` when given (so the writer can read straight into its segment).
   */
  readContent(pieceBytes: number, alloc?: (sizeBytes: number) => Buffer): AsyncIterable<Buffer>
}

/** An input entry the layer leaves out, and why (a socket, say). */
export interface SkippedEntry {
  /** Path as in the input (relative to a directory input's root). */
  path: string
  reason: string
}

/** An indexed input: its entries in input order and what releases it. */
export interface EntrySource {
  entries: SourceEntry[]
  /** Entries left out of the layer (also reported through `onWarning`). */
  skipped?: SkippedEntry[]
  /** Total content bytes (sum of `sizeBytes`). */
  totalBytes: number
  /** Releases open files and temporary copies. */
  close(): Promise<void>
}

/** Cleans a tar name the way the reference does: `path.Clean("/"+name)` without the `/`. */
export function cleanEntryName(name: string): string {
  const parts: string[] = []
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') parts.pop()
    else parts.push(part)
  }
  return parts.join('/')
}

/** The xattrs of an entry that has none, shared (never mutated) to save memory per entry. */
export const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map()

/** Content reader for entries without content. */
export async function* noContent(
  _pieceBytes: number,
  _alloc?: (sizeBytes: number) => Buffer,
): AsyncIterable<Buffer> {}
