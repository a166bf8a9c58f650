/**
 * What the FUSE filesystem needs from an image, in two levels:
 * - `LayerSource`: per-layer entry queries (one layer's TOC as the store or a local blob
 *   sees it, whiteout markers included, landmarks and the TOC entry excluded);
 * - `ImageView`: the merged, read-only view the FUSE handlers call (whiteouts and opaque
 *   directories applied, top layer wins). `MergedView` builds one from `LayerSource`s.
 * Every method is asynchronous: a FUSE handler runs on Node's event loop and must never
 * block it.
 */

/** Entry types a view can present (hardlinks are resolved to their target). */
export type NodeType = 'dir' | 'reg' | 'symlink' | 'char' | 'block' | 'fifo'

/**
 * One TOC entry of one layer, as the FS needs it. Names are normalised (no leading `./`
 * or `/`, no trailing `/`; the root directory is `''`).
 */
export interface LayerEntry {
  /** Unique across the whole image (all layers) and stable while mounted; used for inodes. */
  id: number
  name: string
  type: NodeType | 'hardlink'
  /** Permission and special bits (07777), without the file-type bits. */
  mode: number
  uid: number
  gid: number
  /** Bytes of file content (reg); 0 for other types. */
  sizeBytes: number
  /** Modification time in milliseconds since the epoch. */
  mtimeMs: number
  /** Symlink target, or for a hardlink the name of the entry it links to (same layer). */
  linkName: string
  devMajor: number
  devMinor: number
  /** The layer's real extended attributes (decoded from the TOC's base64). */
  xattrs: Record<string, Buffer>
  /** For a regular file: how many entries of this layer share its content (1 + hardlinks). */
  nlink: number
}

/**
 * One layer's entries, queried by name. Implementations: local blob, SQLite store.
 * A source synthesises parent directories the TOC leaves out, and hides the layer's
 * landmark and TOC entries; it keeps whiteout markers (the merged view interprets them).
 */
export interface LayerSource {
  /** The entry at `name` in this layer, or undefined. Hardlinks are returned as stored. */
  entry(name: string): Promise<LayerEntry | undefined>
  /**
   * Every entry directly inside directory `dirName` of this layer (whiteout markers
   * included), in a stable order. Empty when the layer has nothing there.
   */
  children(dirName: string): Promise<LayerEntry[]>
  /**
   * Reads `length` bytes of regular file `entry` (a `reg` entry of this layer) from
   * `offset`; fewer only at the end of the file. Rejects with an EdgestarError when the
   * bytes cannot be had (offline past the wait, failed verification): the FS answers EIO.
   */
  read(entry: LayerEntry, offset: number, length: number): Promise<Buffer>
  /**
   * The bytes as slices of memory the source keeps for the caller until `release`, so
   * they can be sent without a copy. Optional: the merged view falls back to `read`.
   */
  readSlices?(entry: LayerEntry, offset: number, length: number): Promise<LentBytes>
  /** `readSlices` answered at once when the bytes are already in memory; else undefined. */
  sliceIfReady?(entry: LayerEntry, offset: number, length: number): LentBytes | undefined
  /** Uncompressed size of the layer's content in bytes (for statfs). */
  readonly contentBytes: number
  /** False when no entry of the layer has an extended attribute; unknown when absent. */
  readonly hasXattrs?: boolean
  /** Number of entries in the layer (for statfs). */
  readonly entryCount: number
}

/** Bytes lent by a source: `parts` in order, valid until `release` (call it exactly once). */
export interface LentBytes {
  readonly parts: readonly Buffer[]
  release(): void
}

/** One file-system object of the merged view, with everything `stat` reports. */
export interface ViewNode {
  ino: number
  type: NodeType
  mode: number
  uid: number
  gid: number
  sizeBytes: number
  mtimeMs: number
  nlink: number
  devMajor: number
  devMinor: number
  linkName: string
  xattrs: Record<string, Buffer>
}

/** A directory listing entry of the merged view. */
export interface DirEntry {
  name: string
  node: ViewNode
}

/** Totals `statfs` reports. */
export interface ViewStats {
  /** Uncompressed size of the image content in bytes. */
  sizeBytes: number
  /** Number of entries of the merged view, when known (an estimate is fine). */
  entryCount: number
}

/** The merged read-only view of an image the FUSE handlers serve. */
export interface ImageView {
  /** The node at `path` (normalised, `''` = root), or undefined when absent or hidden. */
  lookup(path: string): Promise<ViewNode | undefined>
  /**
   * The visible entries of directory `path` in a stable order, without `.` and `..`;
   * undefined when `path` is absent or not a directory.
   */
  readdir(path: string): Promise<DirEntry[] | undefined>
  /**
   * Reads up to `length` bytes of the regular file at `path` from `offset` into a new
   * Buffer (shorter at end of file). Rejects when the bytes cannot be had.
   */
  read(path: string, offset: number, length: number): Promise<Buffer>
  /**
   * `read` as lent slices (no copy); `release` once they have been sent. Optional: the
   * FUSE handler falls back to `read`.
   */
  readSlices?(path: string, offset: number, length: number): Promise<LentBytes>
  /** `readSlices` answered synchronously when the bytes are in memory; else undefined. */
  sliceIfReady?(path: string, offset: number, length: number): LentBytes | undefined
  statfs(): Promise<ViewStats>
  /** False when no file of the image has an extended attribute; unknown when absent. */
  readonly hasXattrs?: boolean
  /** Releases what the view holds (database handles, readers). */
  close(): Promise<void>
}
